package objstore

import (
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// TestUploadLimit: an upload over MaxUploadBytes is refused with S3's
// EntityTooLarge, cleanly (the client reads the error, nothing is stored),
// whether it is one PUT, one part, a POST form or the sum of a multipart
// upload's parts.
func TestUploadLimit(t *testing.T) {
	cfg := baseConfig(t)
	cfg.MaxUploadBytes = 6 << 20
	st := startStore(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	app := st.s3(st.app)
	cli := newRunner(t, st.app)

	file := func(name string, size int) string {
		p := filepath.Join(cli.dir, name)
		b := make([]byte, size)
		_, _ = rand.Read(b)
		must(t, os.WriteFile(p, b, 0o600))
		return p
	}
	// One PUT, through the aws CLI: refused early from its Content-Length.
	out, err := cli.aws(ctx, st.url, "s3api", "put-object", "--bucket", "uploads", "--key", "too-big.bin", "--body", file("7m", 7<<20))
	if err == nil || !strings.Contains(out, "EntityTooLarge") {
		t.Fatalf("put-object of 7 MiB with a 6 MiB limit: %v\n%s", err, out)
	}
	// At the limit it is fine.
	cli.mustAWS(ctx, st.url, "s3api", "put-object", "--bucket", "uploads", "--key", "just-right.bin", "--body", file("6m", 6<<20))
	// aws s3 cp goes multipart with 8 MiB parts: each part is refused.
	out, err = cli.aws(ctx, st.url, "s3", "cp", file("12m", 12<<20), "s3://uploads/big-cp.bin")
	if err == nil || !strings.Contains(out, "EntityTooLarge") {
		t.Fatalf("s3 cp of 12 MiB in 8 MiB parts with a 6 MiB limit: %v\n%s", err, out)
	}

	// Parts within the limit whose sum is not: refused at completion, and the
	// upload stays for the client to abort.
	key := aws.String("sum.bin")
	mp, err := app.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String("uploads"), Key: key})
	must(t, err)
	var parts []types.CompletedPart
	for n := int32(1); n <= 2; n++ {
		up, err := app.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String("uploads"), Key: key, UploadId: mp.UploadId,
			PartNumber: aws.Int32(n), Body: bytes.NewReader(make([]byte, 5<<20))})
		must(t, err)
		parts = append(parts, types.CompletedPart{PartNumber: aws.Int32(n), ETag: up.ETag})
	}
	_, err = app.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String("uploads"), Key: key, UploadId: mp.UploadId,
		PartNumber: aws.Int32(3), Body: bytes.NewReader(make([]byte, 7<<20))})
	wantCode(t, "a 7 MiB part", err, "EntityTooLarge")
	_, err = app.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String("uploads"), Key: key, UploadId: mp.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts}})
	wantCode(t, "completing 10 MiB", err, "EntityTooLarge")
	// One part alone is within the limit and completes.
	_, err = app.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String("uploads"), Key: key, UploadId: mp.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts[:1]}})
	must(t, err)

	// A POST form whose file is over the limit, though the form is within
	// the early check's slack: refused on the file's exact size.
	const postScript = `
import sys, uuid, urllib.request, urllib.error, boto3
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url=sys.argv[1], config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))
p = s3.generate_presigned_post("uploads", "posted-big.bin", Conditions=[["content-length-range", 1, 100 << 20]], ExpiresIn=300)
b = uuid.uuid4().hex
body = b"".join(("--%s\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n%s\r\n" % (b, k, v)).encode() for k, v in p["fields"].items())
body += ("--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f\"\r\n\r\n" % b).encode() + b"x" * (6 * 1024 * 1024 + 512 * 1024) + ("\r\n--%s--\r\n" % b).encode()
try:
    urllib.request.urlopen(urllib.request.Request(p["url"], data=body, method="POST", headers={"Content-Type": "multipart/form-data; boundary=" + b}))
    print("stored")
except urllib.error.HTTPError as e:
    print(e.code, e.read().decode())
`
	out, err = cli.run(ctx, debianPython, "-c", postScript, st.url)
	if err != nil || !strings.HasPrefix(out, "400") || !strings.Contains(out, "EntityTooLarge") {
		t.Fatalf("POST of 6.5 MiB with a 6 MiB limit: %v\n%s", err, out)
	}

	// Nothing oversized was stored.
	lo, err := app.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("uploads")})
	must(t, err)
	var keys []string
	for _, o := range lo.Contents {
		keys = append(keys, *o.Key)
		if *o.Size > cfg.MaxUploadBytes {
			t.Errorf("%s is %d bytes, over the limit", *o.Key, *o.Size)
		}
	}
	if strings.Join(keys, ",") != "just-right.bin,sum.bin" {
		t.Errorf("objects after the refusals: %v", keys)
	}
	s := st.waitStatus("the refusals", func(s Status) bool { return s.RejectedUploads >= 5 })
	if s.RequestsFor("PutObject", "EntityTooLarge") != 1 || s.RequestsFor("CompleteMultipartUpload", "EntityTooLarge") != 1 ||
		s.RequestsFor("PostObject", "EntityTooLarge") != 1 || s.RequestsFor("UploadPart", "EntityTooLarge") < 2 {
		t.Errorf("refusals by action: %+v", s.Requests)
	}
}
