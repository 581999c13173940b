package objstore

import (
	"errors"
	"testing"
	"time"

	"github.com/versity/versitygw/metrics"
	"github.com/versity/versitygw/s3err"
)

func TestBuildStatus(t *testing.T) {
	now := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	scan := scanResult{at: now.Add(-time.Second), buckets: []BucketStatus{{Name: "a", Objects: 2, Bytes: 10}}}
	in := snapshotInput{
		base: Status{PID: 7, Endpoint: "http://127.0.0.1:9000", Generation: 1}, now: now, ready: true, scan: scan,
		requests:    map[[2]string]int64{{"PutObject", "OK"}: 3, {"GetObject", "NoSuchKey"}: 1, {"GetObject", "OK"}: 5},
		credentials: 4, aborted: 1, rejected: 2,
	}
	s := buildStatus(in)
	want := []RequestCount{{"GetObject", "NoSuchKey", 1}, {"GetObject", "OK", 5}, {"PutObject", "OK", 3}}
	if len(s.Requests) != len(want) {
		t.Fatalf("requests %+v", s.Requests)
	}
	for i := range want {
		if s.Requests[i] != want[i] {
			t.Errorf("requests[%d] = %+v, want %+v", i, s.Requests[i], want[i])
		}
	}
	if s.PID != 7 || !s.Ready || s.Published != now || s.Scanned != scan.at || s.Credentials != 4 || s.AbortedUploads != 1 || s.RejectedUploads != 2 {
		t.Errorf("status %+v", s)
	}
	if s.RequestsFor("GetObject", "OK") != 5 || s.RequestsFor("DeleteObject", "OK") != 0 {
		t.Error("RequestsFor")
	}
	// The snapshot shares nothing with its inputs.
	scan.buckets[0].Objects = 99
	in.requests[[2]string{"PutObject", "OK"}] = 100
	if b, _ := s.Bucket("a"); b.Objects != 2 || s.RequestsFor("PutObject", "OK") != 3 {
		t.Error("a published snapshot changed with its inputs")
	}
}

func TestOutcomeAndAction(t *testing.T) {
	for err, want := range map[error]string{
		nil:                                      "OK",
		s3err.GetAPIError(s3err.ErrAccessDenied): "AccessDenied",
		s3err.GetEntityTooLargeErr(10, 5):        "EntityTooLarge",
		errExpiredToken:                          "ExpiredToken",
		errors.New("disk on fire"):               "InternalError",
	} {
		if got := outcome(err); got != want {
			t.Errorf("outcome(%v) = %q, want %q", err, got, want)
		}
	}
	if actionName(metrics.ActionGetObject) != "GetObject" || actionName(metrics.ActionUndetected) != "Unknown" {
		t.Error("actionName")
	}
}
