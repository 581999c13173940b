package objstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/gofiber/fiber/v3"
	"github.com/versity/versitygw/backend"
	"github.com/versity/versitygw/metrics"
	"github.com/versity/versitygw/s3err"
)

// Status is an immutable snapshot of the object store, published by the
// server and read without waiting on any lock (for `haven status` and
// metrics). Never modify a Status after it is published.
type Status struct {
	// PID is the serving process.
	PID int `json:"pid"`
	// Endpoint is the S3 endpoint URL, for AWS_ENDPOINT_URL_S3.
	Endpoint string `json:"endpoint"`
	// Region is the region requests are signed for.
	Region string `json:"region"`
	// Ready is true once the S3 listener serves.
	Ready bool `json:"ready"`
	// Started is when the server started.
	Started time.Time `json:"started"`
	// Published is when this snapshot was built.
	Published time.Time `json:"published"`
	// Buckets are the configured buckets, by name, as of Scanned.
	Buckets []BucketStatus `json:"buckets"`
	// Scanned is when the objects were last counted.
	Scanned time.Time `json:"scanned"`
	// ScanError says why the last count failed, if it did.
	ScanError string `json:"scanError,omitempty"`
	// Requests counts requests by S3 operation ("GetObject", "ListObjectsV2",
	// "Unknown" when versitygw refused it before routing) and outcome ("OK" or
	// the S3 error code), sorted by action then outcome.
	Requests []RequestCount `json:"requests"`
	// Credentials is the number of live (unexpired) credentials held.
	Credentials int `json:"credentials"`
	// AbortedUploads counts multipart uploads the lifecycle rule aborted.
	AbortedUploads int64 `json:"abortedUploads"`
	// RejectedUploads counts uploads refused for exceeding MaxUploadBytes.
	RejectedUploads int64 `json:"rejectedUploads"`
	// MaxUploadBytes is the configured upload limit.
	MaxUploadBytes int64 `json:"maxUploadBytes"`
	// Generation counts configuration loads (1 at start, +1 per reload).
	Generation int64 `json:"generation"`
}

// BucketStatus is one bucket's contents.
type BucketStatus struct {
	// Name is the bucket's name.
	Name string `json:"name"`
	// Objects counts the bucket's objects.
	Objects int64 `json:"objects"`
	// Bytes is the sum of their sizes.
	Bytes int64 `json:"bytes"`
	// IncompleteUploads counts multipart uploads not yet completed or aborted.
	IncompleteUploads int `json:"incompleteUploads"`
	// Policy is true when the bucket has a bucket policy.
	Policy bool `json:"policy"`
}

// RequestCount is how many requests for one action ended with one outcome.
type RequestCount struct {
	// Action is the S3 operation, e.g. "GetObject".
	Action string `json:"action"`
	// Outcome is "OK" or the S3 error code, e.g. "AccessDenied".
	Outcome string `json:"outcome"`
	// Count is how many requests ended so since the store started.
	Count int64 `json:"count"`
}

// RequestsFor returns the count for action and outcome in the snapshot.
func (s Status) RequestsFor(action, outcome string) int64 {
	for _, r := range s.Requests {
		if r.Action == action && r.Outcome == outcome {
			return r.Count
		}
	}
	return 0
}

// Bucket returns the status of one bucket, if configured.
func (s Status) Bucket(name string) (BucketStatus, bool) {
	for _, b := range s.Buckets {
		if b.Name == name {
			return b, true
		}
	}
	return BucketStatus{}, false
}

// stats collects what Status reports. Writers take mu briefly; readers only
// ever see published snapshots.
type stats struct {
	mu       sync.Mutex
	requests map[[2]string]int64

	aborted  atomic.Int64
	rejected atomic.Int64
	ready    atomic.Bool

	scanMu sync.Mutex
	scan   scanResult

	current atomic.Pointer[Status]
}

type scanResult struct {
	at      time.Time
	buckets []BucketStatus
	err     string
}

func newStats() *stats { return &stats{requests: map[[2]string]int64{}} }

func (st *stats) count(action, outcome string) {
	st.mu.Lock()
	st.requests[[2]string{action, outcome}]++
	st.mu.Unlock()
}

// metricsSink is versitygw's metrics.Manager, counting every request it
// handles by action and outcome.
type metricsSink struct{ st *stats }

// Send implements metrics.Manager.
func (m metricsSink) Send(_ fiber.Ctx, err error, action string, _ int64, _ int) {
	m.st.count(actionName(action), outcome(err))
}

// Close implements metrics.Manager.
func (metricsSink) Close() {}

var _ metrics.Manager = metricsSink{}

// actionName turns versitygw's metric names ("s3_GetObject") into S3
// operation names ("GetObject").
func actionName(a string) string {
	if a == metrics.ActionUndetected {
		return "Unknown"
	}
	return strings.TrimPrefix(a, "s3_")
}

// outcome is "OK" or the S3 error code of err.
func outcome(err error) string {
	if err == nil {
		return "OK"
	}
	var se s3err.S3Error
	if errors.As(err, &se) {
		return se.BaseError().Code
	}
	return "InternalError"
}

// snapshotInput is everything a Status is built from.
type snapshotInput struct {
	base        Status // PID, Endpoint, Region, Started, MaxUploadBytes, Generation
	now         time.Time
	ready       bool
	requests    map[[2]string]int64
	scan        scanResult
	credentials int
	aborted     int64
	rejected    int64
}

// buildStatus is the pure assembly of a snapshot.
func buildStatus(in snapshotInput) *Status {
	s := in.base
	s.Ready = in.ready
	s.Published = in.now
	s.Buckets = slices.Clone(in.scan.buckets)
	s.Scanned, s.ScanError = in.scan.at, in.scan.err
	s.Credentials = in.credentials
	s.AbortedUploads, s.RejectedUploads = in.aborted, in.rejected
	s.Requests = make([]RequestCount, 0, len(in.requests))
	for k, n := range in.requests {
		s.Requests = append(s.Requests, RequestCount{Action: k[0], Outcome: k[1], Count: n})
	}
	slices.SortFunc(s.Requests, func(a, b RequestCount) int {
		return cmp.Or(cmp.Compare(a.Action, b.Action), cmp.Compare(a.Outcome, b.Outcome))
	})
	return &s
}

// publish builds and stores a fresh snapshot.
func (st *stats) publish(base Status, now time.Time, credentials int) *Status {
	st.mu.Lock()
	req := make(map[[2]string]int64, len(st.requests))
	for k, v := range st.requests {
		req[k] = v
	}
	st.mu.Unlock()
	st.scanMu.Lock()
	scan := st.scan
	st.scanMu.Unlock()
	s := buildStatus(snapshotInput{base: base, now: now, ready: st.ready.Load(), requests: req, scan: scan,
		credentials: credentials, aborted: st.aborted.Load(), rejected: st.rejected.Load()})
	st.current.Store(s)
	return s
}

// scanBuckets counts the objects, bytes and incomplete uploads of each
// configured bucket through the backend (so the count is S3's view: no
// temporary or metadata files).
func scanBuckets(ctx context.Context, be backend.Backend, cfg Config) ([]BucketStatus, error) {
	out := make([]BucketStatus, 0, len(cfg.Buckets))
	var errs []error
	for _, b := range cfg.Buckets {
		bs := BucketStatus{Name: b.Name, Policy: len(b.Policy) > 0}
		token := ""
		for {
			// versitygw's backend expects every field its controller sets.
			name, empty, max, owner := b.Name, "", int32(1000), false
			tok := token
			res, err := be.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &name, Prefix: &empty, ContinuationToken: &tok,
				Delimiter: &empty, MaxKeys: &max, StartAfter: &empty, FetchOwner: &owner})
			if err != nil {
				errs = append(errs, fmt.Errorf("count objects in %s: %w", b.Name, err))
				break
			}
			for _, o := range res.Contents {
				bs.Objects++
				if o.Size != nil {
					bs.Bytes += *o.Size
				}
			}
			if res.IsTruncated == nil || !*res.IsTruncated || res.NextContinuationToken == nil {
				break
			}
			token = *res.NextContinuationToken
		}
		err := eachUpload(ctx, be, b.Name, func(uploadRef) { bs.IncompleteUploads++ })
		if err != nil {
			errs = append(errs, err)
		}
		out = append(out, bs)
	}
	slices.SortFunc(out, func(a, b BucketStatus) int { return cmp.Compare(a.Name, b.Name) })
	return out, errors.Join(errs...)
}
