package objstore

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestAWSCLI is the acceptance with a client nobody here wrote: the real aws
// CLI, with haven-issued temporary credentials in its environment only.
// cp, sync, presign (fetched with plain HTTP), list-objects-v2, a 50 MiB
// multipart upload, get-object with a Range, and the refusals.
func TestAWSCLI(t *testing.T) {
	st := startStore(t, baseConfig(t))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	app := newRunner(t, st.app)
	ep := st.url

	// cp up and down.
	src := filepath.Join(app.dir, "notes.txt")
	must(t, os.WriteFile(src, []byte("week 1 notes\n"), 0o600))
	app.mustAWS(ctx, ep, "s3", "cp", src, "s3://uploads/notes.txt")
	app.mustAWS(ctx, ep, "s3", "cp", "s3://uploads/notes.txt", filepath.Join(app.dir, "notes.back"))
	if b, _ := os.ReadFile(filepath.Join(app.dir, "notes.back")); string(b) != "week 1 notes\n" {
		t.Fatalf("cp round trip: %q", b)
	}

	// sync a tree, change one file, sync again: only that file is uploaded.
	site := filepath.Join(app.dir, "site")
	files := map[string]string{"index.html": "<h1>hi</h1>", "css/app.css": "body{}", "js/app.js": "1", "js/vendor/x.js": "2"}
	for name, body := range files {
		must(t, os.MkdirAll(filepath.Dir(filepath.Join(site, name)), 0o700))
		must(t, os.WriteFile(filepath.Join(site, name), []byte(body), 0o600))
		// Older than the upload, as a checked-out tree is: sync compares the
		// file's mtime with LastModified, which S3 keeps to the second.
		must(t, os.Chtimes(filepath.Join(site, name), time.Now().Add(-time.Hour), time.Now().Add(-time.Hour)))
	}
	out := app.mustAWS(ctx, ep, "s3", "sync", site, "s3://uploads/static/")
	if n := strings.Count(out, "upload:"); n != len(files) {
		t.Fatalf("first sync uploaded %d files, want %d:\n%s", n, len(files), out)
	}
	must(t, os.WriteFile(filepath.Join(site, "css/app.css"), []byte("body{color:red}"), 0o600))
	out = app.mustAWS(ctx, ep, "s3", "sync", site, "s3://uploads/static/")
	if n := strings.Count(out, "upload:"); n != 1 || !strings.Contains(out, "css/app.css") {
		t.Fatalf("second sync should upload css/app.css only:\n%s", out)
	}
	down := filepath.Join(app.dir, "down")
	app.mustAWS(ctx, ep, "s3", "sync", "s3://uploads/static/", down)
	files["css/app.css"] = "body{color:red}"
	for name, body := range files {
		if b, err := os.ReadFile(filepath.Join(down, name)); err != nil || string(b) != body {
			t.Fatalf("synced down %s = %q, %v; want %q", name, b, err, body)
		}
	}

	// list-objects-v2.
	var listed struct {
		KeyCount int
		Contents []struct {
			Key  string
			Size int64
		}
	}
	out = app.mustAWS(ctx, ep, "s3api", "list-objects-v2", "--bucket", "uploads", "--prefix", "static/", "--no-paginate", "--output", "json")
	must(t, json.Unmarshal([]byte(out), &listed))
	if listed.KeyCount != len(files) || len(listed.Contents) != len(files) {
		t.Fatalf("list-objects-v2: %s", out)
	}

	// A 50 MiB upload: the CLI goes multipart (8 MiB parts), so the ETag ends in -7.
	big := filepath.Join(app.dir, "big.bin")
	data := make([]byte, 50<<20)
	_, _ = rand.Read(data)
	must(t, os.WriteFile(big, data, 0o600))
	app.mustAWS(ctx, ep, "s3", "cp", big, "s3://uploads/big.bin")
	var head struct {
		ContentLength int64
		ETag          string
	}
	must(t, json.Unmarshal([]byte(app.mustAWS(ctx, ep, "s3api", "head-object", "--bucket", "uploads", "--key", "big.bin", "--output", "json")), &head))
	if head.ContentLength != 50<<20 || !strings.HasSuffix(strings.Trim(head.ETag, `"`), "-7") {
		t.Fatalf("head-object after the multipart upload: %+v (want 52428800 bytes, a 7-part ETag)", head)
	}
	app.mustAWS(ctx, ep, "s3", "cp", "s3://uploads/big.bin", filepath.Join(app.dir, "big.back"))
	back, err := os.ReadFile(filepath.Join(app.dir, "big.back"))
	must(t, err)
	if sha256.Sum256(back) != sha256.Sum256(data) {
		t.Fatal("the 50 MiB object came back different")
	}

	// get-object with a Range.
	var ranged struct {
		ContentLength int64
		ContentRange  string
	}
	rangeOut := filepath.Join(app.dir, "range.bin")
	must(t, json.Unmarshal([]byte(app.mustAWS(ctx, ep, "s3api", "get-object", "--bucket", "uploads", "--key", "big.bin",
		"--range", "bytes=1048576-1049599", rangeOut, "--output", "json")), &ranged))
	part, _ := os.ReadFile(rangeOut)
	if ranged.ContentLength != 1024 || ranged.ContentRange != "bytes 1048576-1049599/52428800" || !bytes.Equal(part, data[1048576:1049600]) {
		t.Fatalf("ranged get: %+v, %d bytes", ranged, len(part))
	}

	// presign, fetched with plain HTTP; a tampered signature is refused.
	must(t, os.WriteFile(src, []byte("handout"), 0o600))
	app.mustAWS(ctx, ep, "s3", "cp", src, "s3://materials/course-1/handout.pdf")
	url := strings.TrimSpace(app.mustAWS(ctx, ep, "s3", "presign", "s3://materials/course-1/handout.pdf", "--expires-in", "600"))
	if !strings.Contains(url, "X-Amz-Security-Token=") || !strings.Contains(url, "X-Amz-Signature=") {
		t.Fatalf("presigned URL lacks the session token or signature: %s", url)
	}
	code, body := httpGet(t, ctx, url)
	if code != http.StatusOK || body != "handout" {
		t.Fatalf("GET presigned URL: %d %q", code, body)
	}
	tampered := url[:strings.Index(url, "X-Amz-Signature=")+len("X-Amz-Signature=")] + strings.Repeat("0", 64)
	if code, body := httpGet(t, ctx, tampered); code != http.StatusForbidden || !strings.Contains(body, "SignatureDoesNotMatch") {
		t.Fatalf("GET tampered presigned URL: %d %s", code, body)
	}
	// A presigned URL is only as good as its signer: the app may not read materials/secret/.
	app.mustAWS(ctx, ep, "s3", "cp", src, "s3://materials/secret/key.pdf")
	url = strings.TrimSpace(app.mustAWS(ctx, ep, "s3", "presign", "s3://materials/secret/key.pdf"))
	if code, body := httpGet(t, ctx, url); code != http.StatusForbidden || !strings.Contains(body, "AccessDenied") {
		t.Fatalf("GET presigned URL the signer may not read: %d %s", code, body)
	}

	// Refusals: unsigned, another role, a wrong secret.
	if out, err := app.aws(ctx, ep, "s3", "ls", "s3://materials/", "--no-sign-request"); err == nil || !strings.Contains(out, "AccessDenied") {
		t.Fatalf("unsigned ls: %v\n%s", err, out)
	}
	if out, err := app.aws(ctx, ep, "s3", "cp", "s3://materials/course-1/handout.pdf", "-", "--no-sign-request"); err == nil || !strings.Contains(out, "Forbidden") && !strings.Contains(out, "AccessDenied") {
		t.Fatalf("unsigned cp: %v\n%s", err, out)
	}
	nobody := newRunner(t, st.nobody)
	if out, err := nobody.aws(ctx, ep, "s3api", "get-object", "--bucket", "materials", "--key", "course-1/handout.pdf", filepath.Join(nobody.dir, "x")); err == nil || !strings.Contains(out, "AccessDenied") {
		t.Fatalf("get-object as a role without policy: %v\n%s", err, out)
	}
	wrong := st.app
	wrong.SecretAccessKey = strings.Repeat("A", 40)
	if out, err := newRunner(t, wrong).aws(ctx, ep, "s3api", "list-objects-v2", "--bucket", "uploads"); err == nil || !strings.Contains(out, "SignatureDoesNotMatch") {
		t.Fatalf("list with a wrong secret: %v\n%s", err, out)
	}

	done := time.Now()
	s := st.waitStatus("the CLI's requests", func(s Status) bool {
		return s.RequestsFor("CompleteMultipartUpload", "OK") == 1 && s.RequestsFor("UploadPart", "OK") == 7 && s.Scanned.After(done)
	})
	if b, _ := s.Bucket("uploads"); b.IncompleteUploads != 0 {
		t.Errorf("uploads has %d incomplete uploads after the CLI finished", b.IncompleteUploads)
	}
}

func httpGet(t *testing.T, ctx context.Context, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	must(t, err)
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
