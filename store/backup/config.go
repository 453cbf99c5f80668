package backup

import (
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Duration is a time.Duration written as a Go duration string ("10s",
// "24h") in TOML.
type Duration time.Duration

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%q is not a duration such as \"10s\" or \"24h\"", b)
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes d as a Go duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// Config is the [backup] table: the repository and the task's schedule.
type Config struct {
	// Repository is the repository URL: file:///absolute/dir or
	// s3://bucket/prefix?endpoint=...; empty turns backup off. Default
	// empty.
	Repository string `toml:"repository"`
	// FlushInterval: how often committed ops are shipped. Default 1s.
	FlushInterval Duration `toml:"flush_interval"`
	// CheckpointInterval: how often the checkpoint time advances while
	// idle. Default 10s.
	CheckpointInterval Duration `toml:"checkpoint_interval"`
	// SegmentMaxBytes bounds a segment object's raw size. Default 16 MiB.
	SegmentMaxBytes int `toml:"segment_max_bytes"`
	// SnapshotInterval is the snapshot schedule; 0s takes none. Default 24h.
	SnapshotInterval Duration `toml:"snapshot_interval"`
	// SnapshotKeepLast and SnapshotKeepWithin are the retention policy
	// (see RetentionPolicy); both 0 keep everything. Defaults 7 and 0s.
	SnapshotKeepLast   int      `toml:"snapshot_keep_last"`
	SnapshotKeepWithin Duration `toml:"snapshot_keep_within"`
	// VerifyInterval is the verify schedule; 0s runs none. Default 24h.
	VerifyInterval Duration `toml:"verify_interval"`
	// RetryMax caps the backoff after errors. Default 1m.
	RetryMax Duration `toml:"retry_max"`
	// ReadCacheBytes bounds the cache of repository objects that serve
	// reads below the local log (tiered reads), by raw size. Default 64
	// MiB, accepted 1 MiB .. 64 GiB.
	ReadCacheBytes int64 `toml:"read_cache_bytes"`
}

// DefaultConfig is the [backup] table's defaults.
func DefaultConfig() Config {
	return Config{
		FlushInterval:      Duration(time.Second),
		CheckpointInterval: Duration(10 * time.Second),
		SegmentMaxBytes:    16 << 20,
		SnapshotInterval:   Duration(24 * time.Hour),
		SnapshotKeepLast:   7,
		VerifyInterval:     Duration(24 * time.Hour),
		RetryMax:           Duration(time.Minute),
		ReadCacheBytes:     DefaultReadCacheBytes,
	}
}

// Validate checks every field; errors name the key and the accepted range.
func (c Config) Validate() error {
	if c.Repository != "" {
		if err := validateURL(c.Repository); err != nil {
			return err
		}
	}
	between := func(key string, d Duration, lo, hi time.Duration, zeroOK bool) error {
		v := time.Duration(d)
		if (zeroOK && v == 0) || (v >= lo && v <= hi) {
			return nil
		}
		if zeroOK {
			return fmt.Errorf("backup.%s = %s: accepted 0s (off) or %s..%s", key, v, lo, hi)
		}
		return fmt.Errorf("backup.%s = %s: accepted %s..%s", key, v, lo, hi)
	}
	for _, chk := range []error{
		between("flush_interval", c.FlushInterval, 10*time.Millisecond, time.Hour, false),
		between("checkpoint_interval", c.CheckpointInterval, 100*time.Millisecond, 24*time.Hour, false),
		between("snapshot_interval", c.SnapshotInterval, time.Second, 365*24*time.Hour, true),
		between("snapshot_keep_within", c.SnapshotKeepWithin, time.Minute, 10*365*24*time.Hour, true),
		between("verify_interval", c.VerifyInterval, time.Second, 365*24*time.Hour, true),
		between("retry_max", c.RetryMax, time.Second, time.Hour, false),
	} {
		if chk != nil {
			return chk
		}
	}
	if c.SegmentMaxBytes < 64<<10 || c.SegmentMaxBytes > 256<<20 {
		return fmt.Errorf("backup.segment_max_bytes = %d: accepted 65536..268435456", c.SegmentMaxBytes)
	}
	if c.ReadCacheBytes < 1<<20 || c.ReadCacheBytes > 64<<30 {
		return fmt.Errorf("backup.read_cache_bytes = %d: accepted 1048576..68719476736", c.ReadCacheBytes)
	}
	if c.SnapshotKeepLast < 0 || c.SnapshotKeepLast > 10000 {
		return fmt.Errorf("backup.snapshot_keep_last = %d: accepted 0..10000 (0: no count limit)", c.SnapshotKeepLast)
	}
	return nil
}

// TaskConfig is the task's part of c.
func (c Config) TaskConfig() TaskConfig {
	return TaskConfig{
		FlushInterval:      time.Duration(c.FlushInterval),
		CheckpointInterval: time.Duration(c.CheckpointInterval),
		SegmentBytes:       c.SegmentMaxBytes,
		SnapshotInterval:   time.Duration(c.SnapshotInterval),
		Retention:          RetentionPolicy{KeepLast: c.SnapshotKeepLast, KeepWithin: time.Duration(c.SnapshotKeepWithin)},
		VerifyInterval:     time.Duration(c.VerifyInterval),
		RetryMax:           time.Duration(c.RetryMax),
	}
}

// validateURL checks the repository URL's form; OpenURL checks the rest
// (the directory exists, the credentials are set) when the node starts.
func validateURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "file" && u.Scheme != "s3") {
		return fmt.Errorf("%s = %q: accepted file:///absolute/dir or s3://bucket/prefix?endpoint=URL", configKey, raw)
	}
	if u.Scheme == "file" && (!strings.HasPrefix(u.Path, "/") || (u.Host != "" && u.Host != "localhost")) {
		return fmt.Errorf("%s = %q: a file URL needs an absolute path, as in file:///absolute/dir", configKey, raw)
	}
	if u.Scheme == "s3" && u.Host == "" {
		return fmt.Errorf("%s = %q: an s3 URL names its bucket, as in s3://bucket/prefix", configKey, raw)
	}
	return nil
}
