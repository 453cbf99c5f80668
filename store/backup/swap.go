package backup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/minio/minio-go/v7"
)

// errSwapConflict is returned by Swap when the object no longer holds
// the expected bytes.
var errSwapConflict = errors.New("backup: the object changed since it was read")

// Swapper replaces an object only if it still holds given bytes,
// atomically with respect to other Swap calls: what the manifest's
// writers need so that two of them can never both succeed from the same
// manifest (one of the two updates would be lost). Every Backend is one.
type Swapper interface {
	// Swap stores data at key if the object there holds exactly old, and
	// fails with an error wrapping errSwapConflict otherwise.
	Swap(ctx context.Context, key string, old, data []byte) error
}

// swapLock is the lock file DirBackend.Swap holds; names starting with a
// dot are never keys.
const swapLock = ".manifest.lock"

// Swap implements Swapper with an exclusive flock(2) on a lock file in
// the repository's directory, held while it compares and replaces the
// object: it excludes other processes on this host, and on file systems
// whose locks are shared between hosts (NFS with lockd, for one) those
// hosts too.
func (b *DirBackend) Swap(ctx context.Context, key string, old, data []byte) error {
	f, err := os.OpenFile(filepath.Join(b.root, swapLock), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("swap %s: %w", key, err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("swap %s: lock: %w", key, err)
	}
	cur, err := b.Get(ctx, key)
	if err != nil {
		return err
	}
	if !bytes.Equal(cur, old) {
		return fmt.Errorf("%w: %s", errSwapConflict, key)
	}
	return b.Put(ctx, key, data)
}

// Swap implements Swapper with a conditional PutObject (If-Match on the
// ETag of the object read), which S3 and MinIO apply atomically.
func (b *S3Backend) Swap(ctx context.Context, key string, old, data []byte) error {
	if err := ValidateKey(key); err != nil {
		return err
	}
	obj, err := b.client.GetObject(ctx, b.bucket, b.object(key), minio.GetObjectOptions{})
	if err != nil {
		return s3Fail(ctx, "get", b.location(key), err)
	}
	var cur bytes.Buffer
	_, err = cur.ReadFrom(obj)
	var st minio.ObjectInfo
	if err == nil {
		st, err = obj.Stat()
	}
	obj.Close()
	if err != nil {
		if s3ErrorCode(err) == minio.NoSuchKey {
			return fmt.Errorf("%w: %s", ErrNotFound, key)
		}
		return s3Fail(ctx, "get", b.location(key), err)
	}
	if !bytes.Equal(cur.Bytes(), old) {
		return fmt.Errorf("%w: %s", errSwapConflict, key)
	}
	opts := minio.PutObjectOptions{ContentType: "application/octet-stream", SendContentMd5: true, DisableMultipart: true}
	opts.SetMatchETag(st.ETag)
	if _, err := b.client.PutObject(ctx, b.bucket, b.object(key), bytes.NewReader(data), int64(len(data)), opts); err != nil {
		if minio.ToErrorResponse(err).StatusCode == 412 {
			return fmt.Errorf("%w: %s", errSwapConflict, key)
		}
		return s3Fail(ctx, "put", b.location(key), err)
	}
	return nil
}
