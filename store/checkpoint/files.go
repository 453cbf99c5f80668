package checkpoint

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/kmb-db/kmb/store/internal/durable"
)

// Dir is the directory of a data dir that holds its checkpoints.
const Dir = "checkpoints"

// Keep is how many checkpoints Save leaves: the newest and the one before
// it, so that a newest one found corrupt still leaves one to start from.
const Keep = 2

const ext = ".ckpt"

// ErrNone is returned by Load when no checkpoint could be used.
var ErrNone = errors.New("checkpoint: no usable checkpoint")

// File is a checkpoint file in a directory.
type File struct {
	Op   uint64
	Path string
}

func fileName(op uint64) string { return fmt.Sprintf("%020d%s", op, ext) }

// List returns the checkpoint files in dir, newest (highest op) first. A
// missing dir holds none.
func List(dir string) ([]File, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	var out []File
	for _, e := range entries {
		digits, ok := strings.CutSuffix(e.Name(), ext)
		if !ok || len(digits) != 20 || !e.Type().IsRegular() {
			continue
		}
		op, err := strconv.ParseUint(digits, 10, 64)
		if err != nil {
			continue
		}
		out = append(out, File{Op: op, Path: filepath.Join(dir, e.Name())})
	}
	slices.SortFunc(out, func(a, b File) int { return cmp.Compare(b.Op, a.Op) })
	return out, nil
}

// Saved describes a checkpoint Save wrote.
type Saved struct {
	File
	Bytes  int64
	Totals Totals
}

// Save writes the checkpoint of h into dir (created if missing): fill
// writes the state through the Writer, and Save closes it. The file
// appears, whole and synced, under its final name only once complete;
// then every checkpoint but the newest Keep is removed. A cancelled ctx
// (checked between blocks) or any error leaves no file behind.
func Save(ctx context.Context, dir string, h Header, fill func(*Writer) error) (Saved, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Saved{}, fmt.Errorf("checkpoint: %w", err)
	}
	name := fileName(h.Op)
	tmp := filepath.Join(dir, name+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return Saved{}, fmt.Errorf("checkpoint: %w", err)
	}
	bw := bufio.NewWriterSize(&ctxWriter{ctx: ctx, w: f}, 1<<20)
	w := NewWriter(bw, h)
	err = fill(w)
	if err == nil {
		err = w.Close()
	}
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, name))
	}
	if err == nil {
		err = durable.SyncDir(dir)
	}
	if err != nil {
		os.Remove(tmp)
		return Saved{}, fmt.Errorf("checkpoint of op %d: %w", h.Op, err)
	}
	saved := Saved{File: File{Op: h.Op, Path: filepath.Join(dir, name)}, Bytes: w.Bytes(), Totals: w.Totals()}
	return saved, prune(dir)
}

// Adopt moves a complete checkpoint file of op, written and synced
// elsewhere on the same file system (one received from a peer), into dir
// under its final name, durably, and prunes the older ones as Save does.
// The caller has checked its contents (Read).
func Adopt(dir, path string, op uint64) (Saved, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Saved{}, fmt.Errorf("checkpoint: %w", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return Saved{}, fmt.Errorf("checkpoint: %w", err)
	}
	final := filepath.Join(dir, fileName(op))
	if err := os.Rename(path, final); err != nil {
		return Saved{}, fmt.Errorf("checkpoint of op %d: %w", op, err)
	}
	if err := durable.SyncDir(dir); err != nil {
		return Saved{}, fmt.Errorf("checkpoint of op %d: %w", op, err)
	}
	if err := durable.SyncDir(filepath.Dir(path)); err != nil {
		return Saved{}, fmt.Errorf("checkpoint of op %d: %w", op, err)
	}
	return Saved{File: File{Op: op, Path: final}, Bytes: fi.Size()}, prune(dir)
}

// prune removes every checkpoint but the newest Keep, and temporary files
// a crash left.
func prune(dir string) error {
	files, err := List(dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, f := range files[min(Keep, len(files)):] {
		errs = append(errs, os.Remove(f.Path))
	}
	if tmps, _ := filepath.Glob(filepath.Join(dir, "*"+ext+".tmp")); len(tmps) > 0 {
		for _, t := range tmps {
			errs = append(errs, os.Remove(t))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("checkpoint: prune: %w", err)
	}
	return nil
}

// ctxWriter fails writes once ctx is done.
type ctxWriter struct {
	ctx context.Context
	w   *os.File
}

func (c *ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}

// Loaded describes the checkpoint Load used.
type Loaded struct {
	File
	Header Header
	Totals Totals
	Bytes  int64
}

// Load reads the newest checkpoint in dir that decodes whole and that
// accept (called with its header before its state is read) does not
// refuse, into a sink that newSink returns fresh for each file tried. A
// checkpoint passed over is logged at WARN with the reason. ErrNone means
// there was none to use.
func Load(dir string, logger *slog.Logger, accept func(Header) error, newSink func() Sink) (Loaded, error) {
	files, err := List(dir)
	if err != nil {
		return Loaded{}, err
	}
	for _, f := range files {
		l, err := loadFile(f, accept, newSink())
		if err == nil {
			return l, nil
		}
		logger.Warn("checkpoint not used: an older one, or a replay of the log, is used instead",
			slog.String("checkpoint", f.Path), slog.Uint64("op", f.Op), slog.String("reason", err.Error()))
	}
	return Loaded{}, ErrNone
}

func loadFile(f File, accept func(Header) error, sink Sink) (Loaded, error) {
	fh, err := os.Open(f.Path)
	if err != nil {
		return Loaded{}, err
	}
	defer fh.Close()
	cr := &countingReader{r: fh}
	h, tot, err := Read(cr, acceptingSink{Sink: sink, accept: accept})
	if err != nil {
		return Loaded{}, err
	}
	if h.Op != f.Op {
		return Loaded{}, fmt.Errorf("%w: the file is named after op %d but holds op %d", ErrCorrupt, f.Op, h.Op)
	}
	return Loaded{File: f, Header: h, Totals: tot, Bytes: cr.n}, nil
}

type countingReader struct {
	r *os.File
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// acceptingSink asks accept about the header before any state is read,
// so that a checkpoint the caller cannot use is not read further.
type acceptingSink struct {
	Sink
	accept func(Header) error
}

func (a acceptingSink) Begin(h Header) error {
	if a.accept != nil {
		if err := a.accept(h); err != nil {
			return err
		}
	}
	return a.Sink.Begin(h)
}
