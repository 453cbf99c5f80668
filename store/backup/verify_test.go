package backup

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestVerifyReportsEveryProblem(t *testing.T) {
	ctx := context.Background()
	seg := func(i int) string { return SegmentKey(uint64(20*i+1), uint64(20*i+20)) }
	type want struct {
		problems   map[string][]string // object -> kinds, in order
		manifestOK bool
		segmentsOK int
		orphans    []string
	}
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, r *Repository, b *DirBackend)
		want   want
	}{
		{"sound", func(*testing.T, *Repository, *DirBackend) {},
			want{nil, true, 5, nil}},
		{"flipped byte", func(t *testing.T, r *Repository, b *DirBackend) { flipByte(t, b, seg(2), 40) },
			want{map[string][]string{seg(2): {ProblemChecksum, ProblemCorrupt}}, true, 4, nil}},
		{"flipped last byte", func(t *testing.T, r *Repository, b *DirBackend) { flipByte(t, b, seg(4), -1) },
			want{map[string][]string{seg(4): {ProblemChecksum, ProblemCorrupt}}, true, 4, nil}},
		{"deleted segment", func(t *testing.T, r *Repository, b *DirBackend) { b.Delete(ctx, seg(1)) },
			want{map[string][]string{seg(1): {ProblemMissing}}, true, 4, nil}},
		{"truncated segment", func(t *testing.T, r *Repository, b *DirBackend) { truncate(t, b, seg(3), 10) },
			want{map[string][]string{seg(3): {ProblemChecksum, ProblemCorrupt}}, true, 4, nil}},
		{"two damaged segments", func(t *testing.T, r *Repository, b *DirBackend) {
			flipByte(t, b, seg(0), 30)
			b.Delete(ctx, seg(3))
		}, want{map[string][]string{seg(0): {ProblemChecksum, ProblemCorrupt}, seg(3): {ProblemMissing}}, true, 3, nil}},
		{"segment swapped for another valid one", func(t *testing.T, r *Repository, b *DirBackend) {
			data, _ := b.Get(ctx, seg(3))
			b.Put(ctx, seg(2), data)
		}, want{map[string][]string{seg(2): {ProblemChecksum, ProblemMismatch}}, true, 4, nil}},
		{"corrupt manifest", func(t *testing.T, r *Repository, b *DirBackend) { flipByte(t, b, ManifestKey, 200) },
			want{map[string][]string{ManifestKey: {ProblemManifest}}, false, 5, nil}},
		{"deleted manifest", func(t *testing.T, r *Repository, b *DirBackend) { b.Delete(ctx, ManifestKey) },
			want{map[string][]string{ManifestKey: {ProblemMissing}}, false, 5, nil}},
		{"corrupt manifest and a deleted segment", func(t *testing.T, r *Repository, b *DirBackend) {
			flipByte(t, b, ManifestKey, 200)
			b.Delete(ctx, seg(2))
		}, want{map[string][]string{ManifestKey: {ProblemManifest}, seg(3): {ProblemNotListed}}, false, 4, nil}},
		{"consistent-looking manifest missing a segment", func(t *testing.T, r *Repository, b *DirBackend) {
			m := r.Manifest()
			m.Segments = slices.Delete(m.Segments, 2, 3)
			b.Put(ctx, ManifestKey, encodeManifest(&m))
		}, want{map[string][]string{ManifestKey: {ProblemManifest, ProblemManifest}}, false, 4, []string{seg(2)}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, b, _ := backedUpRepo(t, 100, 20)
			tc.damage(t, r, b)
			rep, err := VerifyBackend(ctx, b)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string][]string{}
			for _, p := range rep.Problems {
				got[p.Object] = append(got[p.Object], p.Kind)
				if p.String() == "" || !strings.HasPrefix(p.String(), p.Object+": ") {
					t.Errorf("problem %q", p)
				}
			}
			if len(got) == 0 {
				got = nil
			}
			if !reflect.DeepEqual(got, tc.want.problems) {
				t.Fatalf("problems %v, want kinds %v", rep.Problems, tc.want.problems)
			}
			if rep.OK() != (tc.want.problems == nil) || rep.ManifestOK != tc.want.manifestOK || rep.SegmentsOK != tc.want.segmentsOK {
				t.Fatalf("report %+v", rep)
			}
			if !reflect.DeepEqual(rep.Orphans, tc.want.orphans) {
				t.Fatalf("orphans %v, want %v", rep.Orphans, tc.want.orphans)
			}
			t.Logf("%d problems: %v", len(rep.Problems), rep.Problems)
		})
	}
}

func truncate(t testing.TB, b *DirBackend, key string, n int) {
	t.Helper()
	p := filepath.Join(b.Root(), filepath.FromSlash(key))
	if err := os.Truncate(p, int64(n)); err != nil {
		t.Fatal(err)
	}
}

// Open refuses a corrupt manifest with an error that says so; Verify
// still examines the repository.
func TestOpenCorruptManifest(t *testing.T) {
	ctx := context.Background()
	_, b, _ := backedUpRepo(t, 40, 20)
	flipByte(t, b, ManifestKey, 150)
	_, err := Open(ctx, b)
	if err == nil || !strings.Contains(err.Error(), "manifest.json") || !strings.Contains(err.Error(), "corrupt manifest") {
		t.Fatalf("Open of a corrupt manifest: %v", err)
	}
}

func TestVerifyCancelled(t *testing.T) {
	r, _, _ := backedUpRepo(t, 40, 20)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := r.Verify(ctx); err == nil {
		t.Fatal("a cancelled verify succeeded")
	}
}
