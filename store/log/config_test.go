package log

import (
	"strings"
	"testing"
)

func TestConfigWithDefaults(t *testing.T) {
	if got := (Config{Dir: "d"}).WithDefaults(); got.SegmentSizeBytes != DefaultSegmentSizeBytes || got.Dir != "d" {
		t.Fatalf("WithDefaults() = %+v", got)
	}
	if got := (Config{SegmentSizeBytes: 5 << 20}).WithDefaults(); got.SegmentSizeBytes != 5<<20 {
		t.Fatalf("WithDefaults overrode a set value: %+v", got)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr []string // substrings; none means valid
	}{
		{"defaults", Config{Dir: "d"}.WithDefaults(), nil},
		{"min", Config{Dir: "d", SegmentSizeBytes: MinSegmentSizeBytes}, nil},
		{"max", Config{Dir: "d", SegmentSizeBytes: MaxSegmentSizeBytes}, nil},
		{"no dir", Config{SegmentSizeBytes: MinSegmentSizeBytes}, []string{"dir is required"}},
		{"below min", Config{Dir: "d", SegmentSizeBytes: MinSegmentSizeBytes - 1},
			[]string{"segment_size_bytes is 1048575", "between 1048576 (1 MiB) and 4294967296 (4 GiB)"}},
		{"above max", Config{Dir: "d", SegmentSizeBytes: MaxSegmentSizeBytes + 1}, []string{"segment_size_bytes is 4294967297"}},
		{"zero without defaults", Config{Dir: "d"}, []string{"segment_size_bytes is 0"}},
		{"negative", Config{Dir: "d", SegmentSizeBytes: -1}, []string{"segment_size_bytes is -1"}},
		{"everything wrong", Config{}, []string{"dir is required", "segment_size_bytes"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want an error mentioning %q", tt.wantErr)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q, want it to mention %q", err, w)
				}
			}
		})
	}
}

func TestOpenValidates(t *testing.T) {
	_, _, err := Open(Config{Dir: t.TempDir(), SegmentSizeBytes: 1}, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "segment_size_bytes") {
		t.Fatalf("Open with a 1-byte segment size = %v, want a segment_size_bytes error", err)
	}
	l, _, err := Open(Config{Dir: t.TempDir()}, nil, nil)
	if err != nil {
		t.Fatalf("Open with defaults: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}
