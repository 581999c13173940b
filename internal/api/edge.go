package api

import (
	"context"
	"net/http"
	"time"
)

// EdgeStatus is the edge's view in the status: its address, behaviours and
// the counters of its published Stats snapshot.
type EdgeStatus struct {
	// URL is where viewers browse the region through the edge.
	URL string `json:"url"`
	// Behaviors are "PATTERN → TARGET" lines, in match order, the default last.
	Behaviors []string `json:"behaviors"`
	// KeyGroup and KeyPairID are the trusted key group of signed behaviours
	// and the ID of its one public key.
	KeyGroup  string `json:"key_group,omitempty"`
	KeyPairID string `json:"key_pair_id,omitempty"`
	// Requests ... Compressed are the edge's counters (internal/edge.Stats).
	Requests       uint64 `json:"requests"`
	Hits           uint64 `json:"hits"`
	RefreshHits    uint64 `json:"refresh_hits"`
	Misses         uint64 `json:"misses"`
	StaleServed    uint64 `json:"stale_served"`
	StaleIfError   uint64 `json:"stale_if_error"`
	Collapsed      uint64 `json:"collapsed"`
	PassThrough    uint64 `json:"pass_through"`
	OriginRequests uint64 `json:"origin_requests"`
	OriginErrors   uint64 `json:"origin_errors"`
	Denied         uint64 `json:"denied"`
	Rejected       uint64 `json:"rejected"`
	Invalidations  uint64 `json:"invalidations"`
	Evictions      uint64 `json:"evictions"`
	// Objects and Bytes are the cache's size now.
	Objects int   `json:"objects"`
	Bytes   int64 `json:"bytes"`
	// HitRatio is (hits + refresh hits + stale-if-error) / (that + misses).
	HitRatio float64 `json:"hit_ratio"`
}

// ObjStoreStatus is the object store's view in the status, from the
// snapshot the store last published on its control socket.
type ObjStoreStatus struct {
	// Endpoint is the S3 endpoint (the app's AWS_ENDPOINT_URL_S3).
	Endpoint string `json:"endpoint"`
	// PID is the store's own process; it outlives the daemon.
	PID int `json:"pid"`
	// Reachable is false when the last poll of its control socket failed;
	// Error says why.
	Reachable bool   `json:"reachable"`
	Error     string `json:"error,omitempty"`
	// Polled is when the snapshot was read.
	Polled time.Time `json:"polled"`
	// Buckets are the configured buckets with their contents.
	Buckets []ObjStoreBucket `json:"buckets"`
	// Requests and Errors count S3 requests since the store started, all
	// and those that did not end OK.
	Requests int64 `json:"requests"`
	Errors   int64 `json:"errors"`
	// Credentials counts the live credentials the store holds.
	Credentials int `json:"credentials"`
	// MaxUploadBytes is the upload limit; RejectedUploads and AbortedUploads
	// count uploads refused for size and multipart uploads the lifecycle
	// rule aborted.
	MaxUploadBytes  int64 `json:"max_upload_bytes"`
	RejectedUploads int64 `json:"rejected_uploads"`
	AbortedUploads  int64 `json:"aborted_uploads"`
}

// ObjStoreBucket is one bucket's contents.
type ObjStoreBucket struct {
	Name              string `json:"name"`
	Objects           int64  `json:"objects"`
	Bytes             int64  `json:"bytes"`
	IncompleteUploads int    `json:"incomplete_uploads"`
}

// InvalidationRequest asks the edge to drop cached objects
// (POST /v1/edge/invalidations), as CloudFront's CreateInvalidation.
type InvalidationRequest struct {
	// Paths start with /; * is allowed only last, as a prefix match.
	Paths []string `json:"paths"`
}

// InvalidationResult is what an invalidation removed; it has taken effect
// when the API answers.
type InvalidationResult struct {
	Paths   []string `json:"paths"`
	Objects int      `json:"objects"`
	// TookMS is how long the edge took, in milliseconds.
	TookMS float64 `json:"took_ms"`
}

// Invalidate drops cached objects at the edge.
func (c *Client) Invalidate(ctx context.Context, r InvalidationRequest) (InvalidationResult, error) {
	var out InvalidationResult
	err := c.do(ctx, http.MethodPost, "/v1/edge/invalidations", r, &out)
	return out, err
}
