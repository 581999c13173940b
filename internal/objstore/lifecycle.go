package objstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/versity/versitygw/backend"
)

// uploadRef is one incomplete multipart upload.
type uploadRef struct {
	Bucket, Key, UploadID string
	// Initiated is when the backend says the upload began. versitygw's posix
	// backend reports the upload directory's modification time, which a new
	// part moves forward: the rule then counts from the last part uploaded.
	Initiated time.Time
}

// dueForAbort is the lifecycle rule AbortIncompleteMultipartUpload: the
// uploads initiated at least after ago, as of now. after ≤ 0 means the rule
// is off.
func dueForAbort(uploads []uploadRef, now time.Time, after time.Duration) []uploadRef {
	if after <= 0 {
		return nil
	}
	var due []uploadRef
	for _, u := range uploads {
		if !now.Before(u.Initiated.Add(after)) {
			due = append(due, u)
		}
	}
	return due
}

// eachUpload calls fn for every incomplete multipart upload in bucket.
func eachUpload(ctx context.Context, be backend.Backend, bucket string, fn func(uploadRef)) error {
	keyMarker, idMarker := "", ""
	for {
		// versitygw's backend expects every field its controller sets.
		b, empty, max, km, im := bucket, "", int32(1000), keyMarker, idMarker
		res, err := be.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: &b, Delimiter: &empty, Prefix: &empty,
			KeyMarker: &km, UploadIdMarker: &im, MaxUploads: &max})
		if err != nil {
			return fmt.Errorf("list multipart uploads of %s: %w", bucket, err)
		}
		for _, u := range res.Uploads {
			fn(uploadRef{Bucket: bucket, Key: u.Key, UploadID: u.UploadID, Initiated: u.Initiated})
		}
		if !res.IsTruncated || (res.NextKeyMarker == "" && res.NextUploadIDMarker == "") {
			return nil
		}
		keyMarker, idMarker = res.NextKeyMarker, res.NextUploadIDMarker
	}
}

// sweepUploads runs the rule once over every configured bucket: it lists the
// incomplete uploads, decides with dueForAbort and aborts the due ones. It
// returns how many it aborted.
func sweepUploads(ctx context.Context, be backend.Backend, cfg Config, log *slog.Logger) (int, error) {
	after := cfg.abortAfter()
	if after <= 0 {
		return 0, nil
	}
	var all []uploadRef
	var errs []error
	for _, b := range cfg.Buckets {
		if err := eachUpload(ctx, be, b.Name, func(u uploadRef) { all = append(all, u) }); err != nil {
			errs = append(errs, err)
		}
	}
	n := 0
	for _, u := range dueForAbort(all, cfg.Clock.Now(), after) {
		err := be.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &u.Bucket, Key: &u.Key, UploadId: &u.UploadID})
		if err != nil {
			errs = append(errs, fmt.Errorf("abort upload %s of %s/%s: %w", u.UploadID, u.Bucket, u.Key, err))
			continue
		}
		n++
		log.Info("incomplete multipart upload aborted by the lifecycle rule", "bucket", u.Bucket, "key", u.Key, "upload_id", u.UploadID,
			"initiated", u.Initiated, "days", cfg.AbortIncompleteMultipartUploadDays)
	}
	return n, errors.Join(errs...)
}
