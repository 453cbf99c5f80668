package backup

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/kmb-db/kmb/internal/kmbdtest"
)

// awsEnv is a getenv over the given AWS_* variables.
func awsEnv(vars ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i < len(vars); i += 2 {
		m[vars[i]] = vars[i+1]
	}
	return func(k string) string { return m[k] }
}

func TestParseS3URL(t *testing.T) {
	creds := awsEnv("AWS_ACCESS_KEY_ID", "AKID", "AWS_SECRET_ACCESS_KEY", "SECRET")
	withToken := awsEnv("AWS_ACCESS_KEY_ID", "AKID", "AWS_SECRET_ACCESS_KEY", "SECRET", "AWS_SESSION_TOKEN", "TOKEN")
	def := func(c S3Config) S3Config {
		if c.Endpoint == "" {
			c.Endpoint = DefaultS3Endpoint
		}
		if c.Region == "" {
			c.Region = DefaultS3Region
		}
		if c.AccessKey == "" {
			c.AccessKey, c.SecretKey = "AKID", "SECRET"
		}
		return c
	}
	for _, tc := range []struct {
		url  string
		env  func(string) string
		want S3Config
	}{
		{"s3://bucket", creds, def(S3Config{Bucket: "bucket"})},
		{"s3://bucket/", creds, def(S3Config{Bucket: "bucket"})},
		{"s3://bucket/some/prefix", creds, def(S3Config{Bucket: "bucket", Prefix: "some/prefix"})},
		{"s3://bucket/some/prefix/", creds, def(S3Config{Bucket: "bucket", Prefix: "some/prefix"})},
		{
			"s3://bucket/some/prefix?endpoint=http://127.0.0.1:9000&region=us-east-1&path_style=true", creds,
			def(S3Config{Endpoint: "http://127.0.0.1:9000", Bucket: "bucket", Prefix: "some/prefix", PathStyle: true}),
		},
		{
			"s3://my.backups-1/kmb?region=eu-west-1&path_style=false&endpoint=https://minio.example.com:9443/", withToken,
			def(S3Config{Endpoint: "https://minio.example.com:9443", Region: "eu-west-1", Bucket: "my.backups-1", Prefix: "kmb", SessionToken: "TOKEN"}),
		},
		{
			"s3://bucket/p?endpoint=http%3A%2F%2Flocalhost%3A9000", creds,
			def(S3Config{Endpoint: "http://localhost:9000", Bucket: "bucket", Prefix: "p"}),
		},
	} {
		got, err := parseS3URL(tc.url, tc.env)
		if err != nil {
			t.Errorf("parseS3URL(%q): %v", tc.url, err)
			continue
		}
		if got != tc.want {
			t.Errorf("parseS3URL(%q) =\n %+v\nwant\n %+v", tc.url, got, tc.want)
		}
		if _, err := NewS3Backend(got); err != nil {
			t.Errorf("NewS3Backend(parseS3URL(%q)): %v", tc.url, err)
		}
	}

	for _, tc := range []struct {
		url  string
		env  func(string) string
		want string // substring of the error
	}{
		{"s3://", creds, "the bucket is empty"},
		{"s3:///prefix", creds, "the bucket is empty"},
		{"s3:bucket/prefix", creds, "the bucket is empty"},
		{"s3://Bucket/x", creds, `s3 bucket "Bucket"`},
		{"s3://ab/x", creds, `s3 bucket "ab"`},
		{"s3://bucket_1/x", creds, `s3 bucket "bucket_1"`},
		{"s3://bucket:9000/x", creds, "endpoint=http(s)://host:port"},
		{"s3://bucket/a//b", creds, "empty path component"},
		{"s3://bucket/a/../b", creds, `".." would leave the repository`},
		{"s3://bucket/.hidden", creds, "starts with a dot"},
		{"s3://bucket/x#frag", creds, "no fragment"},
		{"s3://bucket/x?regoin=eu-west-1", creds, `unknown query parameter "regoin" (accepted: endpoint=http(s)://host[:port], region=NAME, path_style=true|false)`},
		{"s3://bucket/x?access_key=AKID", creds, `unknown query parameter "access_key"`},
		{"s3://bucket/x?region=a&region=b", creds, `query parameter "region" is given 2 times`},
		{"s3://bucket/x?region=", creds, `query parameter "region" is empty`},
		{"s3://bucket/x?endpoint", creds, `query parameter "endpoint" is empty`},
		{"s3://bucket/x?a=%zz", creds, "query: invalid URL escape"},
		{"s3://bucket/x?path_style=yes", creds, `path_style="yes": want true or false`},
		{"s3://bucket/x?path_style=1", creds, `path_style="1": want true or false`},
		{"s3://bucket/x?region=us%20east", creds, `s3 region "us east"`},
		{"s3://bucket/x?endpoint=ftp://host", creds, "the scheme must be http or https"},
		{"s3://bucket/x?endpoint=127.0.0.1:9000", creds, `s3 endpoint "127.0.0.1:9000"`},
		{"s3://bucket/x?endpoint=http://host:9000/path", creds, "with no path, user, query or fragment"},
		{"s3://bucket/x?endpoint=http://", creds, "with no path, user, query or fragment"},
		{"s3://bucket/x?endpoint=http://127.0.0.1:9000", creds, "use path-style requests (path_style=true)"},
		{"s3://bucket/x", awsEnv(), "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY not set"},
		{"s3://bucket/x", awsEnv("AWS_ACCESS_KEY_ID", "AKID"), ": AWS_SECRET_ACCESS_KEY not set"},
		{"s3://bucket/x", awsEnv("AWS_SECRET_ACCESS_KEY", "SECRET", "AWS_SESSION_TOKEN", "T"), ": AWS_ACCESS_KEY_ID not set"},
		{"s3://AKID:hunter2@bucket/x", creds, "takes no user or password"},
	} {
		_, err := parseS3URL(tc.url, tc.env)
		if err == nil {
			t.Errorf("parseS3URL(%q) succeeded, want an error containing %q", tc.url, tc.want)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, tc.want) || !strings.HasPrefix(msg, "backup.repository ") {
			t.Errorf("parseS3URL(%q) = %q, want it to name backup.repository and contain %q", tc.url, msg, tc.want)
		}
		if strings.Contains(msg, "hunter2") {
			t.Errorf("parseS3URL(%q) = %q repeats the password", tc.url, msg)
		} else if !strings.Contains(tc.url, "hunter2") && !strings.Contains(msg, tc.url) {
			t.Errorf("parseS3URL(%q) = %q, does not name the URL", tc.url, msg)
		}
	}
	for _, u := range []string{"s3://bucket/a//b", "s3://bucket/.hidden"} {
		if _, err := parseS3URL(u, creds); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("parseS3URL(%q) = %v, does not wrap ErrInvalidKey", u, err)
		}
	}
}

func TestOpenURLS3(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "AKID")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "SECRET")
	t.Setenv("AWS_SESSION_TOKEN", "")
	const u = "s3://bucket/some/prefix?endpoint=http://127.0.0.1:9000&path_style=true"
	b, err := OpenURL(u) // makes no request
	if err != nil {
		t.Fatal(err)
	}
	s3b, ok := b.(*S3Backend)
	if !ok {
		t.Fatalf("OpenURL(%q) = %T", u, b)
	}
	if s3b.Kind() != "s3" {
		t.Errorf("Kind() = %q", s3b.Kind())
	}
	if got, want := s3b.Describe(), "s3://bucket/some/prefix/ at http://127.0.0.1:9000"; got != want {
		t.Errorf("Describe() = %q, want %q", got, want)
	}

	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	_, err = OpenURL(u)
	if err == nil || !strings.Contains(err.Error(), "backup.repository") || !strings.Contains(err.Error(), "AWS_SECRET_ACCESS_KEY not set") {
		t.Fatalf("OpenURL without a secret key: %v", err)
	}
}

func TestS3Backend(t *testing.T) {
	m := kmbdtest.StartMinIO(t)
	endpoint, user, password := m.Endpoint, m.User, m.Password
	m.MakeBucket(t, "kmb-backup")
	ctx := context.Background()
	cfg := func(bucket, prefix string) S3Config {
		return S3Config{
			Endpoint: endpoint, Bucket: bucket, Prefix: prefix, PathStyle: true,
			AccessKey: user, SecretKey: password,
		}
	}
	open := func(c S3Config) *S3Backend {
		t.Helper()
		b, err := NewS3Backend(c)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	b := open(cfg("kmb-backup", "repo/one"))
	testBackendContract(t, b)

	// The objects are at prefix/key, and the prefix bounds what the
	// backend sees: not repo/one2, which shares its first characters.
	other := open(cfg("kmb-backup", "repo/one2"))
	if err := other.Put(ctx, "manifest.json", []byte("other")); err != nil {
		t.Fatal(err)
	}
	whole := open(cfg("kmb-backup", ""))
	mine, err := b.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, k := range mine {
		want = append(want, "repo/one/"+k)
	}
	want = append(want, "repo/one2/manifest.json")
	if all, err := whole.List(ctx, "repo/"); err != nil || !reflect.DeepEqual(all, want) {
		t.Errorf("the unprefixed backend lists %v %v, want %v", all, err, want)
	}
	if got, err := whole.Get(ctx, "repo/one/manifest.json"); err != nil || string(got) != "m2" {
		t.Errorf("Get of repo/one/manifest.json through the unprefixed backend: %q %v", got, err)
	}
	if got, err := b.List(ctx, "manifest"); err != nil || !reflect.DeepEqual(got, []string{"manifest.json"}) {
		t.Errorf("List(\"manifest\") with a sibling prefix: %v %v", got, err)
	}

	// Objects under the prefix that no key names (a console's folder
	// marker, a dot file) are not listed.
	raw := m.Client(t)
	for _, name := range []string{"repo/one/segments/", "repo/one/.tmp", "repo/one/many/.x"} {
		if _, err := raw.PutObject(ctx, "kmb-backup", name, bytes.NewReader(nil), 0, minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := b.List(ctx, "segments/"); err != nil || !reflect.DeepEqual(got, []string{"segments/b", "segments/deep/c"}) {
		t.Errorf("List(\"segments/\") with foreign objects: %v %v", got, err)
	}

	// List pages through the bucket's listing.
	paged := open(cfg("kmb-backup", "repo/one"))
	paged.listPageSize = 4
	var trace bytes.Buffer
	paged.client.TraceOn(&trace)
	got, err := paged.List(ctx, "many/")
	paged.client.TraceOff()
	if err != nil {
		t.Fatal(err)
	}
	want, _ = b.List(ctx, "many/")
	if len(want) != 37 || !reflect.DeepEqual(got, want) {
		t.Errorf("paged List(\"many/\") = %v, want %v", got, want)
	}
	if n := strings.Count(trace.String(), "list-type=2"); n < 10 {
		t.Errorf("paged List made %d list requests, want 10 pages of 4", n)
	}

	// A missing bucket or bad credentials are errors, never ErrNotFound:
	// the repository must not take them for an empty one.
	for name, c := range map[string]S3Config{
		"missing bucket":     cfg("no-such-bucket", "x"),
		"wrong secret key":   {Endpoint: endpoint, Bucket: "kmb-backup", Prefix: "repo/one", PathStyle: true, AccessKey: user, SecretKey: "wrong-password"},
		"unknown access key": {Endpoint: endpoint, Bucket: "kmb-backup", Prefix: "repo/one", PathStyle: true, AccessKey: "nobody", SecretKey: password},
	} {
		bad := open(c)
		if _, err := bad.Get(ctx, "manifest.json"); err == nil || errors.Is(err, ErrNotFound) {
			t.Errorf("%s: Get: %v", name, err)
		} else if loc := "s3://" + c.Bucket + "/" + c.Prefix + "/manifest.json"; !strings.Contains(err.Error(), loc) {
			t.Errorf("%s: Get error %q does not name %s", name, err, loc)
		}
		if _, err := bad.List(ctx, ""); err == nil {
			t.Errorf("%s: List succeeded", name)
		}
		if err := bad.Put(ctx, "k", []byte("v")); err == nil {
			t.Errorf("%s: Put succeeded", name)
		}
		if err := bad.Delete(ctx, "k"); err == nil {
			t.Errorf("%s: Delete succeeded", name)
		}
	}
}

// A repository on MinIO, opened from its backup.repository URL, is
// written, verified and restored from like one in a directory.
func TestS3RepositoryEndToEnd(t *testing.T) {
	m := kmbdtest.StartMinIO(t)
	endpoint, user, password := m.Endpoint, m.User, m.Password
	m.MakeBucket(t, "kmb-e2e")
	t.Setenv("AWS_ACCESS_KEY_ID", user)
	t.Setenv("AWS_SECRET_ACCESS_KEY", password)
	t.Setenv("AWS_SESSION_TOKEN", "")
	ctx := context.Background()
	repoURL := "s3://kmb-e2e/clusters/prod?endpoint=" + endpoint + "&region=us-east-1&path_style=true"

	b, err := OpenURL(repoURL)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Init(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	ops := sourceLog(t, genOps(1, 1, 200, 11))
	backUp(t, r, ops, 30, 47)
	rep, err := r.Verify(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || !rep.ManifestOK || rep.Ops != 200 || len(rep.Orphans) != 0 {
		t.Fatalf("Verify: %+v", rep)
	}
	keys, err := b.List(ctx, "segments/")
	if err != nil || len(keys) != rep.Segments {
		t.Fatalf("segments/ lists %v (%v), Verify saw %d segments", keys, err, rep.Segments)
	}

	// A second process opens the same URL and restores.
	b2, err := OpenURL(repoURL)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := Open(ctx, b2)
	if err != nil {
		t.Fatal(err)
	}
	if r2.Manifest().RepositoryID != r.Manifest().RepositoryID {
		t.Fatal("the reopened repository is another one")
	}
	dst := filepath.Join(t.TempDir(), "restored")
	sum, err := Restore(ctx, r2, Latest(), dst, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkRestored(t, dst, sum, ops)

	half := filepath.Join(t.TempDir(), "half")
	sum, err = Restore(ctx, r2, ToPosition(150), half, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkRestored(t, half, sum, expectedAtPosition(ops, 150))

	// A damaged object is caught by Verify and refused by Restore.
	seg := keys[1]
	data, err := b.Get(ctx, seg)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0x10
	if err := b.Put(ctx, seg, data); err != nil {
		t.Fatal(err)
	}
	rep, err = r2.Verify(ctx)
	if err != nil || rep.OK() || rep.SegmentsOK != rep.Segments-1 {
		t.Fatalf("Verify of a damaged segment: %+v %v", rep, err)
	}
	for _, p := range rep.Problems {
		if p.Object != seg {
			t.Errorf("Verify of a damaged %s found a problem in another object: %v", seg, p)
		}
	}
	if _, err := Restore(ctx, r2, Latest(), filepath.Join(t.TempDir(), "damaged"), nil); err == nil {
		t.Fatal("Restore read a damaged segment")
	}
}
