package backup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/s3utils"
)

// DefaultS3Endpoint and DefaultS3Region are what an s3:// repository uses
// when its URL names no endpoint or region.
const (
	DefaultS3Endpoint = "https://s3.amazonaws.com"
	DefaultS3Region   = "us-east-1"
)

// S3Config says where an S3Backend keeps its objects and how it signs in.
type S3Config struct {
	// Endpoint is the service's base URL, http:// or https:// (which
	// decides TLS) with a host and an optional port, and no path;
	// DefaultS3Endpoint when empty.
	Endpoint string
	// Region signs the requests; DefaultS3Region when empty.
	Region string
	// Bucket must exist; the backend does not create it.
	Bucket string
	// Prefix is prepended, with a slash, to every key: the object for key
	// k is Prefix + "/" + k, or k when Prefix is empty. It follows the
	// rules of ValidateKey; a leading or trailing slash is dropped.
	Prefix string
	// PathStyle addresses the bucket in the path
	// (https://host/bucket/key) instead of the host name
	// (https://bucket.host/key). Most S3-compatible servers, and any
	// endpoint given as an IP address, need it.
	PathStyle bool
	// AccessKey and SecretKey are required; SessionToken is set for
	// temporary credentials.
	AccessKey, SecretKey, SessionToken string
}

// S3Backend keeps each object in an S3 (or S3-compatible) bucket, under a
// key prefix. It is the s3:// repository.
//
// Put is a single PutObject request, with a Content-MD5 the service
// checks: S3 replaces an object atomically, and once the request succeeds
// the object is stored durably and every later read and list sees it.
// Objects under the prefix whose keys ValidateKey refuses (such as the
// folder markers some consoles create) are not the backend's: List
// skips them.
type S3Backend struct {
	client   *minio.Client
	bucket   string
	prefix   string // "" or the configured prefix followed by "/"
	endpoint string // for Describe
	// listPageSize, if positive, is the number of keys asked for per
	// list request (tests make it small to exercise paging).
	listPageSize int
}

// s3Target is an S3Config checked and with its defaults filled in.
type s3Target struct {
	endpoint *url.URL
	region   string
	prefix   string // "" or the prefix followed by "/"
}

// check validates cfg without making a request.
func (cfg S3Config) check() (s3Target, error) {
	endpoint := cfg.Endpoint
	if endpoint == "" {
		endpoint = DefaultS3Endpoint
	}
	eu, err := url.Parse(endpoint)
	if err != nil {
		return s3Target{}, fmt.Errorf("s3 endpoint %q: %w", endpoint, err)
	}
	if eu.Scheme != "http" && eu.Scheme != "https" {
		return s3Target{}, fmt.Errorf("s3 endpoint %q: the scheme must be http or https", endpoint)
	}
	if eu.Host == "" || eu.User != nil || (eu.Path != "" && eu.Path != "/") || eu.RawQuery != "" || eu.Fragment != "" {
		return s3Target{}, fmt.Errorf("s3 endpoint %q: want http://host[:port] or https://host[:port], with no path, user, query or fragment", endpoint)
	}
	if !cfg.PathStyle && net.ParseIP(eu.Hostname()) != nil {
		return s3Target{}, fmt.Errorf("s3 endpoint %q is an IP address, which cannot address a bucket by host name: use path-style requests (path_style=true)", endpoint)
	}
	region := cfg.Region
	if region == "" {
		region = DefaultS3Region
	}
	if strings.Trim(region, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") != "" {
		return s3Target{}, fmt.Errorf("s3 region %q: want letters, digits, dashes, underscores and dots, as in us-east-1", region)
	}
	if cfg.Bucket == "" {
		return s3Target{}, errors.New("s3 bucket is empty")
	}
	if err := s3utils.CheckValidBucketNameStrict(cfg.Bucket); err != nil {
		return s3Target{}, fmt.Errorf("s3 bucket %q: %w", cfg.Bucket, err)
	}
	prefix := strings.TrimSuffix(strings.TrimPrefix(cfg.Prefix, "/"), "/")
	if prefix != "" {
		if err := ValidateKey(prefix); err != nil {
			return s3Target{}, fmt.Errorf("s3 prefix %q: %w", cfg.Prefix, err)
		}
		prefix += "/"
	}
	if cfg.AccessKey == "" || cfg.SecretKey == "" {
		return s3Target{}, errors.New("s3 credentials: both an access key and a secret key are needed")
	}
	return s3Target{endpoint: eu, region: region, prefix: prefix}, nil
}

// NewS3Backend returns the backend cfg describes. It makes no request: a
// missing bucket or wrong credentials show up at the first operation.
func NewS3Backend(cfg S3Config) (*S3Backend, error) {
	t, err := cfg.check()
	if err != nil {
		return nil, err
	}
	lookup := minio.BucketLookupDNS
	if cfg.PathStyle {
		lookup = minio.BucketLookupPath
	}
	secure := t.endpoint.Scheme == "https"
	transport, err := minio.DefaultTransport(secure)
	if err != nil {
		return nil, fmt.Errorf("s3 transport: %w", err)
	}
	client, err := minio.New(t.endpoint.Host, &minio.Options{
		Creds:        credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, cfg.SessionToken),
		Secure:       secure,
		Transport:    transport,
		Region:       t.region,
		BucketLookup: lookup,
	})
	if err != nil {
		return nil, fmt.Errorf("s3 endpoint %q: %w", t.endpoint, err)
	}
	return &S3Backend{
		client:   client,
		bucket:   cfg.Bucket,
		prefix:   t.prefix,
		endpoint: t.endpoint.Scheme + "://" + t.endpoint.Host,
	}, nil
}

// Kind names the backend's type, "s3", for metrics and logs.
func (b *S3Backend) Kind() string { return "s3" }

// Describe returns where the backend keeps its objects, without
// credentials: the bucket and prefix, and the endpoint, as in
// "s3://bucket/some/prefix/ at https://s3.amazonaws.com".
func (b *S3Backend) Describe() string {
	return fmt.Sprintf("s3://%s/%s at %s", b.bucket, b.prefix, b.endpoint)
}

// object returns the object name of key.
func (b *S3Backend) object(key string) string { return b.prefix + key }

// location names key's object in errors.
func (b *S3Backend) location(key string) string { return "s3://" + b.bucket + "/" + b.object(key) }

// s3Fail wraps err from an operation on what. When ctx has ended it is the
// reason, so that callers can tell a cancellation from a failure.
func s3Fail(ctx context.Context, op, what string, err error) error {
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("%s %s: %w (%v)", op, what, cerr, err)
	}
	return fmt.Errorf("%s %s: %w", op, what, err)
}

// s3ErrorCode is the S3 error code of err, or "".
func s3ErrorCode(err error) string {
	var er minio.ErrorResponse
	if errors.As(err, &er) {
		return er.Code
	}
	return ""
}

// Put stores data at key with one PutObject request.
func (b *S3Backend) Put(ctx context.Context, key string, data []byte) error {
	if err := ValidateKey(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	_, err := b.client.PutObject(ctx, b.bucket, b.object(key), bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{
		ContentType:      "application/octet-stream",
		SendContentMd5:   true,
		DisableMultipart: true,
	})
	if err != nil {
		return s3Fail(ctx, "put", b.location(key), err)
	}
	return nil
}

// Get returns the object at key, or an error wrapping ErrNotFound.
func (b *S3Backend) Get(ctx context.Context, key string) ([]byte, error) {
	if err := ValidateKey(key); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	obj, err := b.client.GetObject(ctx, b.bucket, b.object(key), minio.GetObjectOptions{})
	if err == nil {
		var data []byte
		data, err = io.ReadAll(obj)
		obj.Close()
		if err == nil {
			return data, nil
		}
	}
	if s3ErrorCode(err) == minio.NoSuchKey {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, key)
	}
	return nil, s3Fail(ctx, "get", b.location(key), err)
}

// List returns the sorted keys that start with prefix, paging through
// the bucket's listing.
func (b *S3Backend) List(ctx context.Context, prefix string) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		if err := ValidateKey(prefix[:i]); err != nil {
			return nil, fmt.Errorf("list %q: %w", prefix, err)
		}
	}
	noOwner := false
	opts := minio.ListObjectsOptions{
		Prefix:     b.prefix + prefix,
		Recursive:  true,
		MaxKeys:    b.listPageSize,
		FetchOwner: &noOwner,
	}
	var keys []string
	for obj := range b.client.ListObjectsIter(ctx, b.bucket, opts) {
		if obj.Err != nil {
			return nil, s3Fail(ctx, "list", "s3://"+b.bucket+"/"+opts.Prefix, obj.Err)
		}
		key, ok := strings.CutPrefix(obj.Key, b.prefix)
		if !ok || ValidateKey(key) != nil {
			continue
		}
		keys = append(keys, key)
	}
	// The listing stops without an error when ctx ends between pages.
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list %q: %w", prefix, err)
	}
	slices.Sort(keys)
	return keys, nil
}

// Delete removes the object at key; a missing object is not an error.
func (b *S3Backend) Delete(ctx context.Context, key string) error {
	if err := ValidateKey(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	err := b.client.RemoveObject(ctx, b.bucket, b.object(key), minio.RemoveObjectOptions{})
	if err != nil && s3ErrorCode(err) != minio.NoSuchKey {
		return s3Fail(ctx, "delete", b.location(key), err)
	}
	return nil
}
