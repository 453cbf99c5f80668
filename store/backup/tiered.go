package backup

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	kmblog "github.com/kmb-db/kmb/store/log"
	"github.com/kmb-db/kmb/telemetry/metric"
)

// DefaultReadCacheBytes is the default bound of a Tiered's cache.
const DefaultReadCacheBytes = 64 << 20

// TieredMetrics are a Tiered's instruments; any may be nil.
type TieredMetrics struct {
	Reads       *metric.Counter   // ops served from the repository (kmb_log_tiered_reads_total)
	Duration    *metric.Histogram // each read call (kmb_log_tiered_read_duration_seconds)
	CacheMisses *metric.Counter   // objects fetched and decoded (kmb_log_tiered_cache_misses_total)
}

// NewTieredMetrics registers a Tiered's metrics in r.
func NewTieredMetrics(r *metric.Registry) *TieredMetrics {
	return &TieredMetrics{
		Reads: r.NewCounter("kmb_log_tiered_reads_total",
			"Ops read from the backup repository because they are below the local log."),
		Duration: r.NewHistogram("kmb_log_tiered_read_duration_seconds",
			"Duration of each read of ops below the local log from the backup repository, through its cache.",
			metric.HistogramOpts{Buckets: metric.DurationBuckets(), Scale: 1e-9}),
		CacheMisses: r.NewCounter("kmb_log_tiered_cache_misses_total",
			"Repository objects fetched and decoded for reads below the local log (cache misses)."),
	}
}

// Tiered serves reads of ops that are no longer in the local log from the
// backup repository's objects (segments, or snapshot parts where
// retention removed those), every object checked as a restore checks it,
// through a cache of decoded objects bounded by their raw size (least
// recently used out first). Safe for concurrent use.
type Tiered struct {
	backend Backend
	limit   int64
	m       *TieredMetrics

	repoMu sync.Mutex
	repo   *Repository // opened on first use: the leader may create it after we start

	mu    sync.Mutex
	lru   *list.List // of *cachedObject, most recent first
	byKey map[string]*list.Element
	size  int64
}

type cachedObject struct {
	info SegmentInfo
	ops  []kmblog.Op // ops info.FirstOp..info.LastOp
}

// NewTiered reads from the repository on b, caching at most limit bytes
// (DefaultReadCacheBytes when 0; an object larger than the limit is read
// but not kept). m may be nil.
func NewTiered(b Backend, limit int64, m *TieredMetrics) *Tiered {
	if limit == 0 {
		limit = DefaultReadCacheBytes
	}
	if m == nil {
		m = &TieredMetrics{}
	}
	return &Tiered{backend: b, limit: limit, m: m, lru: list.New(), byKey: map[string]*list.Element{}}
}

// manifest returns the repository's manifest, rereading it when it does
// not reach op last yet or when stale is set (an object it lists is gone).
func (t *Tiered) manifest(ctx context.Context, last uint64, stale bool) (Manifest, error) {
	t.repoMu.Lock()
	defer t.repoMu.Unlock()
	if t.repo == nil {
		r, err := Open(ctx, t.backend)
		if err != nil {
			return Manifest{}, err
		}
		t.repo = r
	} else if stale || t.repo.Checkpoint().Op < last {
		if err := t.repo.Reload(ctx); err != nil {
			return Manifest{}, err
		}
	}
	return t.repo.Manifest(), nil
}

// ReadOps calls fn with ops first..last, in order, from the repository.
// It fails (before calling fn for ops it lacks) when the repository does
// not hold them all.
func (t *Tiered) ReadOps(ctx context.Context, first, last uint64, fn func(*kmblog.Op) error) error {
	if first == 0 || last < first {
		return fmt.Errorf("backup: read ops %d..%d: not a range of ops", first, last)
	}
	start := time.Now()
	defer func() { t.observe(start) }()
	for stale := false; ; stale = true {
		err := t.readOps(ctx, first, last, stale, fn)
		var gone *objectGoneError
		if !errors.As(err, &gone) || stale {
			return err
		}
		first = gone.next // retention replaced an object: reread the manifest once
	}
}

func (t *Tiered) observe(start time.Time) {
	if t.m.Duration != nil {
		t.m.Duration.ObserveDuration(time.Since(start))
	}
}

type objectGoneError struct {
	next uint64 // the first op not yet handed to fn
	err  error
}

func (e *objectGoneError) Error() string { return e.err.Error() }
func (e *objectGoneError) Unwrap() error { return e.err }

func (t *Tiered) readOps(ctx context.Context, first, last uint64, stale bool, fn func(*kmblog.Op) error) error {
	m, err := t.manifest(ctx, last, stale)
	if err != nil {
		return err
	}
	objs, err := m.objectsFor(first, last)
	if err != nil {
		return err
	}
	for _, info := range objs {
		obj, err := t.object(ctx, info)
		if err != nil {
			return &objectGoneError{next: first, err: err}
		}
		for i := range obj.ops {
			op := &obj.ops[i]
			if op.Op < first || op.Op > last {
				continue
			}
			o := *op // the cached op stays as it is
			if err := fn(&o); err != nil {
				return err
			}
			if t.m.Reads != nil {
				t.m.Reads.Inc()
			}
			first = op.Op + 1
		}
	}
	return nil
}

// ReadOp reads one op from the repository.
func (t *Tiered) ReadOp(ctx context.Context, op uint64) (kmblog.Op, error) {
	var out kmblog.Op
	err := t.ReadOps(ctx, op, op, func(o *kmblog.Op) error { out = *o; return nil })
	if err == nil && out.Op != op {
		err = fmt.Errorf("backup: op %d: not in the repository", op)
	}
	return out, err
}

// object returns info's decoded ops, from the cache or the backend.
func (t *Tiered) object(ctx context.Context, info SegmentInfo) (*cachedObject, error) {
	t.mu.Lock()
	if e, ok := t.byKey[info.Name]; ok {
		t.lru.MoveToFront(e)
		t.mu.Unlock()
		return e.Value.(*cachedObject), nil
	}
	t.mu.Unlock()

	if t.m.CacheMisses != nil {
		t.m.CacheMisses.Inc()
	}
	dec, err := newSegmentDecoder()
	if err != nil {
		return nil, err
	}
	defer dec.Close()
	obj := &cachedObject{info: info, ops: make([]kmblog.Op, 0, info.LastOp-info.FirstOp+1)}
	var chainer kmblog.Chainer
	var prev kmblog.Chain
	if _, err := readObject(ctx, t.backend, dec, info, func(op *kmblog.Op, _ int) (bool, error) {
		// Ops backed up before the hash chain existed carry none: they
		// get theirs as the restore computes it, from the object's first.
		if op.Chain == (kmblog.Chain{}) && len(obj.ops) > 0 {
			op.Chain = chainer.Op(prev, op)
		}
		prev = op.Chain
		obj.ops = append(obj.ops, *op)
		return true, nil
	}); err != nil {
		return nil, err
	}
	if int64(info.RawBytes) > t.limit {
		return obj, nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.byKey[info.Name]; ok { // another reader fetched it meanwhile
		return e.Value.(*cachedObject), nil
	}
	t.byKey[info.Name] = t.lru.PushFront(obj)
	t.size += int64(info.RawBytes)
	for t.size > t.limit {
		e := t.lru.Back()
		old := e.Value.(*cachedObject)
		t.lru.Remove(e)
		delete(t.byKey, old.info.Name)
		t.size -= int64(old.info.RawBytes)
	}
	return obj, nil
}

// CachedBytes is the raw size of the objects in the cache.
func (t *Tiered) CachedBytes() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.size
}

// FirstOpAt returns the first op of the newest repository object that
// starts at or before t (Unix ns), for reading every op committed at or
// after t; 1 when none does or the repository cannot be read.
func (t *Tiered) FirstOpAt(ctx context.Context, at int64) uint64 {
	m, err := t.manifest(ctx, 0, false)
	if err != nil {
		return 1
	}
	first := uint64(1)
	for _, s := range m.Segments {
		if s.FirstTimestampUnixNano > at {
			break
		}
		first = s.FirstOp
	}
	return first
}
