package backup

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/kmb-db/kmb/internal/kmbdtest"
)

// startMinIO starts a MinIO server (KMB_MINIO, which scripts/minio.sh
// builds) on loopback, storing into a temporary directory, and waits
// until it is live. It is stopped when the test ends. Without the binary
// the test is skipped, or fails under KMB_REQUIRE_TOOLS=1.
func startMinIO(t *testing.T) (endpoint, user, password string) {
	t.Helper()
	bin := kmbdtest.RequireTool(t, "KMB_MINIO", "minio")
	user, password = "kmb-test", "kmb-test-password"
	dataDir := t.TempDir()            // removed after the server stops
	addrs := kmbdtest.FreeAddrs(t, 2) // S3 API, console
	env := []string{
		"MINIO_ROOT_USER=" + user,
		"MINIO_ROOT_PASSWORD=" + password,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
	}
	p := kmbdtest.Start(t, "minio", env, bin, "server", dataDir,
		"--address", addrs[0], "--console-address", addrs[1], "--quiet")
	endpoint = "http://" + addrs[0]
	client := &http.Client{Timeout: 2 * time.Second}
	kmbdtest.WaitFor(t, "minio at "+endpoint, 60*time.Second, func() bool {
		if p.Exited() {
			t.Fatalf("minio exited before it was live:\n%s", p.Output.String())
		}
		resp, err := client.Get(endpoint + "/minio/health/live")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return endpoint, user, password
}

// makeBucket creates bucket on the MinIO server at endpoint.
func makeBucket(t *testing.T, endpoint, user, password, bucket string) {
	t.Helper()
	c := minioClient(t, endpoint, user, password)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.MakeBucket(ctx, bucket, minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("make bucket %s: %v", bucket, err)
	}
}

// minioClient is a plain client of the server at endpoint, for tests that
// look at or plant objects behind a backend's back.
func minioClient(t *testing.T, endpoint, user, password string) *minio.Client {
	t.Helper()
	c, err := minio.New(strings.TrimPrefix(endpoint, "http://"), &minio.Options{
		Creds:        credentials.NewStaticV4(user, password, ""),
		Region:       DefaultS3Region,
		BucketLookup: minio.BucketLookupPath,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}
