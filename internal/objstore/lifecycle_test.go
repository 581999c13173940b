package objstore

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/versity/versitygw/auth"
	"github.com/versity/versitygw/s3response"

	"github.com/haven-platform/haven/internal/clock"
)

func TestDueForAbort(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	ups := []uploadRef{
		{Key: "old", Initiated: t0.Add(-8 * day)},
		{Key: "exactly", Initiated: t0.Add(-7 * day)},
		{Key: "young", Initiated: t0.Add(-7*day + time.Second)},
		{Key: "future", Initiated: t0.Add(time.Hour)},
	}
	keys := func(us []uploadRef) string {
		var k []string
		for _, u := range us {
			k = append(k, u.Key)
		}
		return strings.Join(k, ",")
	}
	for _, tc := range []struct {
		name  string
		after time.Duration
		want  string
	}{
		{"seven days", 7 * day, "old,exactly"},
		{"one day", day, "old,exactly,young"},
		{"rule off", 0, ""},
		{"negative is off", -day, ""},
	} {
		if got := keys(dueForAbort(ups, t0, tc.after)); got != tc.want {
			t.Errorf("%s: due %q, want %q", tc.name, got, tc.want)
		}
	}
	if got := dueForAbort(nil, t0, day); got != nil {
		t.Errorf("no uploads: %v", got)
	}
}

// TestSweepUploads runs the lifecycle rule against versitygw's real posix
// backend (in this process) on a fake clock: nothing is aborted before the
// uploads are seven days old, both are at seven days, completed objects stay.
func TestSweepUploads(t *testing.T) {
	cwd, err := os.Getwd()
	must(t, err)
	t.Cleanup(func() { _ = os.Chdir(cwd) }) // posix.New changes directory
	dir := t.TempDir()
	must(t, os.MkdirAll(dir+"/"+DataDir, 0o700))
	pb, err := openPosix(dir, testLogger(t))
	must(t, err)
	defer pb.Shutdown()
	ctx := context.Background()
	bucket := "uploads"
	acl, _ := json.Marshal(auth.ACL{Owner: bucketOwner})
	must(t, pb.CreateBucket(context.WithValue(ctx, "bucket-owner", auth.Account{Access: bucketOwner}), //nolint:staticcheck // versitygw's key
		&s3.CreateBucketInput{Bucket: &bucket, CreateBucketConfiguration: &types.CreateBucketConfiguration{}}, acl))
	start := func(key string) {
		e := ""
		var retain time.Time
		_, err := pb.CreateMultipartUpload(ctx, s3response.CreateMultipartUploadInput{Bucket: &bucket, Key: &key, Tagging: &e, ContentType: &e,
			ContentEncoding: &e, ContentDisposition: &e, ContentLanguage: &e, CacheControl: &e, Expires: &e, WebsiteRedirectLocation: &e,
			ObjectLockRetainUntilDate: &retain})
		must(t, err)
	}
	start("a.bin")
	start("b.bin")
	body, size := "kept", int64(4)
	_, err = pb.PutObject(ctx, s3response.PutObjectInput{Bucket: &bucket, Key: aws.String("done.bin"), Body: strings.NewReader(body), ContentLength: &size})
	must(t, err)

	clk := clock.NewFake(time.Now())
	cfg := Config{Buckets: []Bucket{{Name: bucket}}, Clock: clk, AbortIncompleteMultipartUploadDays: 7, DayLength: Duration(24 * time.Hour)}
	count := func() int {
		n := 0
		must(t, eachUpload(ctx, pb, bucket, func(uploadRef) { n++ }))
		return n
	}
	if n, err := sweepUploads(ctx, pb, cfg, testLogger(t)); err != nil || n != 0 || count() != 2 {
		t.Fatalf("fresh uploads: aborted %d (%v), %d left; want 0 aborted, 2 left", n, err, count())
	}
	clk.Advance(7*24*time.Hour - time.Minute)
	if n, err := sweepUploads(ctx, pb, cfg, testLogger(t)); err != nil || n != 0 || count() != 2 {
		t.Fatalf("a minute short of seven days: aborted %d (%v), %d left", n, err, count())
	}
	off := cfg
	off.AbortIncompleteMultipartUploadDays = -1
	clk.Advance(2 * time.Minute)
	if n, err := sweepUploads(ctx, pb, off, testLogger(t)); err != nil || n != 0 || count() != 2 {
		t.Fatalf("rule off: aborted %d (%v), %d left", n, err, count())
	}
	if n, err := sweepUploads(ctx, pb, cfg, testLogger(t)); err != nil || n != 2 || count() != 0 {
		t.Fatalf("after seven days: aborted %d (%v), %d left; want 2 aborted, none left", n, err, count())
	}
	buckets, err := scanBuckets(ctx, pb, cfg)
	must(t, err)
	if len(buckets) != 1 || buckets[0].Objects != 1 || buckets[0].Bytes != 4 || buckets[0].IncompleteUploads != 0 {
		t.Fatalf("after the sweep: %+v", buckets)
	}
}

// TestLifecycleProcess: in a store whose day lasts one second, an interrupted
// multipart upload is aborted by the rule and its parts are gone; objects stay.
func TestLifecycleProcess(t *testing.T) {
	cfg := baseConfig(t)
	cfg.AbortIncompleteMultipartUploadDays = 1
	cfg.DayLength = Duration(time.Second)
	cfg.SweepInterval = Duration(100 * time.Millisecond)
	st := startStore(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	app := st.s3(st.app)
	_, err := app.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("uploads"), Key: aws.String("whole.txt"), Body: strings.NewReader("whole")})
	must(t, err)
	mp, err := app.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String("uploads"), Key: aws.String("interrupted.bin")})
	must(t, err)
	// The client uploads a part and then disappears. (If the sweep was
	// quicker than the part, the upload is already gone: the end state is the same.)
	_, err = app.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String("uploads"), Key: aws.String("interrupted.bin"), UploadId: mp.UploadId,
		PartNumber: aws.Int32(1), Body: bytes.NewReader(make([]byte, 1<<20))})
	if err != nil && errCode(err) != "NoSuchUpload" {
		t.Fatal(err)
	}
	s := st.waitStatus("the upload aborted", func(s Status) bool {
		b, _ := s.Bucket("uploads")
		return s.AbortedUploads == 1 && b.IncompleteUploads == 0 && b.Objects == 1
	})
	_ = s
	lu, err := app.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String("uploads")})
	must(t, err)
	if len(lu.Uploads) != 0 {
		t.Fatalf("uploads left: %+v", lu.Uploads)
	}
	_, err = app.ListParts(ctx, &s3.ListPartsInput{Bucket: aws.String("uploads"), Key: aws.String("interrupted.bin"), UploadId: mp.UploadId})
	wantCode(t, "list parts of the aborted upload", err, "NoSuchUpload")
	out, err := app.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("uploads"), Key: aws.String("whole.txt")})
	must(t, err)
	out.Body.Close()
}
