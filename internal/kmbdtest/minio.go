package kmbdtest

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// MinIO is a MinIO server (an S3-compatible object store) on loopback.
type MinIO struct {
	Endpoint       string // http://127.0.0.1:port
	User, Password string // root credentials, for AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY
}

// StartMinIO starts the MinIO server that KMB_MINIO names (scripts/minio.sh
// builds it), storing into a temporary directory, and waits until it is
// live. It is stopped when the test ends. Without the binary the test is
// skipped, or fails under KMB_REQUIRE_TOOLS=1.
func StartMinIO(t testing.TB) *MinIO {
	t.Helper()
	bin := RequireTool(t, "KMB_MINIO", "minio")
	m := &MinIO{User: "kmb-test", Password: "kmb-test-password"}
	dataDir := t.TempDir()   // removed after the server stops
	addrs := FreeAddrs(t, 2) // S3 API, console
	env := []string{
		"MINIO_ROOT_USER=" + m.User,
		"MINIO_ROOT_PASSWORD=" + m.Password,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
	}
	p := Start(t, "minio", env, bin, "server", dataDir,
		"--address", addrs[0], "--console-address", addrs[1], "--quiet")
	m.Endpoint = "http://" + addrs[0]
	client := &http.Client{Timeout: 2 * time.Second}
	WaitFor(t, "minio at "+m.Endpoint, 60*time.Second, func() bool {
		if p.Exited() {
			t.Fatalf("minio exited before it was live:\n%s", p.Output.String())
		}
		resp, err := client.Get(m.Endpoint + "/minio/health/live")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return m
}

// Client is a plain client of the server, for tests that look at or
// plant objects behind a backend's back.
func (m *MinIO) Client(t testing.TB) *minio.Client {
	t.Helper()
	c, err := minio.New(strings.TrimPrefix(m.Endpoint, "http://"), &minio.Options{
		Creds:        credentials.NewStaticV4(m.User, m.Password, ""),
		Region:       "us-east-1",
		BucketLookup: minio.BucketLookupPath,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// MakeBucket creates bucket.
func (m *MinIO) MakeBucket(t testing.TB, bucket string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.Client(t).MakeBucket(ctx, bucket, minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("make bucket %s: %v", bucket, err)
	}
}

// Env is the AWS environment that gives kmbd the server's credentials.
func (m *MinIO) Env() []string {
	return []string{"AWS_ACCESS_KEY_ID=" + m.User, "AWS_SECRET_ACCESS_KEY=" + m.Password}
}
