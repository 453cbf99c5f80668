package log

import (
	"errors"
	"fmt"
)

const (
	// DefaultSegmentSizeBytes is the roll size when Config leaves it zero.
	DefaultSegmentSizeBytes = 64 << 20
	// MinSegmentSizeBytes and MaxSegmentSizeBytes bound
	// Config.SegmentSizeBytes. The floor keeps the number of files (and
	// of fsyncs at roll) sane; the ceiling keeps a segment addressable
	// with room to spare and its deletion cheap.
	MinSegmentSizeBytes = 1 << 20
	MaxSegmentSizeBytes = 4 << 30
)

// Config configures a Log.
type Config struct {
	// Dir holds the segment files. Required; created if missing.
	Dir string `toml:"dir"`
	// SegmentSizeBytes is the size at which the active segment is
	// sealed and a new one started. A segment exceeds it by at most one
	// record. Default 64 MiB; accepted 1 MiB .. 4 GiB.
	SegmentSizeBytes int64 `toml:"segment_size_bytes"`
	// TolerateCorruption keeps a log with corrupt records that a torn
	// write cannot explain, instead of failing Open: the ops those records
	// held stay in the log, unreadable (faulty), for a replica to fetch
	// from its peers and Repair. Only a replica of a cluster sets it: a
	// single node has nobody to repair from.
	TolerateCorruption bool `toml:"-"`
	// ReadOnly opens the log for reading only, for offline commands on a
	// stopped node's data dir: recovery verifies as usual but cuts,
	// removes and migrates nothing (a torn tail is just not read), and
	// every write returns ErrReadOnly. An empty or missing directory, or a
	// log of format version 1, fails Open.
	ReadOnly bool `toml:"-"`
	// VerifyAll makes Open read and verify every record of every segment,
	// as Check does, instead of trusting sealed segments whose index
	// checks out: for offline repair, which must find all damage.
	VerifyAll bool `toml:"-"`
	// FS is the file system; nil means the operating system's. Tests
	// inject faults through it.
	FS FS `toml:"-"`
}

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.SegmentSizeBytes == 0 {
		c.SegmentSizeBytes = DefaultSegmentSizeBytes
	}
	return c
}

// Validate reports every invalid field of c, naming each by its TOML key.
// Call it on c.WithDefaults().
func (c Config) Validate() error {
	var errs []error
	if c.Dir == "" {
		errs = append(errs, errors.New("log: dir is required"))
	}
	if c.SegmentSizeBytes < MinSegmentSizeBytes || c.SegmentSizeBytes > MaxSegmentSizeBytes {
		errs = append(errs, fmt.Errorf("log: segment_size_bytes is %d, must be between %d (1 MiB) and %d (4 GiB)",
			c.SegmentSizeBytes, MinSegmentSizeBytes, MaxSegmentSizeBytes))
	}
	return errors.Join(errs...)
}
