package objstore

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/haven-platform/haven/internal/clock"
	"github.com/haven-platform/haven/internal/iam"
)

// TestSDKAuthorisation drives the store with the AWS SDK for Go under each
// identity and checks what each may do: identity policies, the bucket policy
// (the edge's OAC grant and an explicit deny), and the refusals of unknown,
// unsigned, wrongly signed, token-less and expired requests.
func TestSDKAuthorisation(t *testing.T) {
	st := startStore(t, baseConfig(t))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	app, edge, nobody := st.s3(st.app), st.s3(st.edge), st.s3(st.nobody)

	put := func(c *s3.Client, bucket, key, body string) error {
		_, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: strings.NewReader(body)})
		return err
	}
	get := func(c *s3.Client, bucket, key string) (string, error) {
		out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
		if err != nil {
			return "", err
		}
		defer out.Body.Close()
		b, err := io.ReadAll(out.Body)
		return string(b), err
	}

	// The app's identity policy allows it to write and read both buckets.
	must(t, put(app, "materials", "course-1/intro.pdf", "intro"))
	must(t, put(app, "materials", "secret/answers.pdf", "answers"))
	must(t, put(app, "uploads", "a.txt", "hello"))
	if got, err := get(app, "uploads", "a.txt"); err != nil || got != "hello" {
		t.Fatalf("app get uploads/a.txt = %q, %v", got, err)
	}
	// The edge has no identity policy: the bucket policy (OAC) lets it read materials only.
	if got, err := get(edge, "materials", "course-1/intro.pdf"); err != nil || got != "intro" {
		t.Fatalf("edge get materials = %q, %v", got, err)
	}
	_, err := get(edge, "uploads", "a.txt")
	wantCode(t, "edge get uploads", err, "AccessDenied")
	wantCode(t, "edge put materials", put(edge, "materials", "x", "x"), "AccessDenied")
	// An explicit Deny in the bucket policy beats the app's identity Allow.
	_, err = get(app, "materials", "secret/answers.pdf")
	wantCode(t, "app get materials/secret", err, "AccessDenied")
	// An explicit Deny in the identity policy beats its own Allow.
	_, err = app.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String("materials"), Key: aws.String("course-1/intro.pdf")})
	wantCode(t, "app delete materials", err, "AccessDenied")
	_, err = app.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String("uploads"), Key: aws.String("a.txt")})
	must(t, err)
	// A role the configuration does not know is denied everything.
	_, err = get(nobody, "materials", "course-1/intro.pdf")
	wantCode(t, "nobody get", err, "AccessDenied")
	wantCode(t, "nobody put", put(nobody, "uploads", "n", "n"), "AccessDenied")
	// ListBucket on the bucket ARN.
	lo, err := app.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("materials")})
	must(t, err)
	if len(lo.Contents) != 2 {
		t.Fatalf("app lists %d objects in materials, want 2", len(lo.Contents))
	}
	_, err = edge.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("materials")})
	wantCode(t, "edge list", err, "AccessDenied")
	// Buckets and policies belong to the configuration.
	_, err = app.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("rogue")})
	wantCode(t, "create bucket", err, "AccessDenied")
	_, err = app.DeleteBucketPolicy(ctx, &s3.DeleteBucketPolicyInput{Bucket: aws.String("materials")})
	wantCode(t, "delete bucket policy", err, "AccessDenied")

	// Credentials the issuer never registered with the store.
	unknown, err := st.iss.Issue(appRole, "i-0ccccccccccccccc3")
	must(t, err)
	wantCode(t, "unregistered key", put(st.s3(unknown), "uploads", "u", "u"), "InvalidAccessKeyId")
	// A wrong secret: S3 answers SignatureDoesNotMatch (403).
	wrong := st.app
	wrong.SecretAccessKey = strings.Repeat("x", 40)
	wantCode(t, "wrong secret", put(st.s3(wrong), "uploads", "w", "w"), "SignatureDoesNotMatch")
	// Another session's token, or none.
	swapped := st.app
	swapped.SessionToken = st.edge.SessionToken
	wantCode(t, "wrong token", put(st.s3(swapped), "uploads", "w", "w"), "InvalidToken")
	noToken := st.app
	noToken.SessionToken = ""
	wantCode(t, "no token", put(st.s3(noToken), "uploads", "w", "w"), "InvalidToken")
	// Expired credentials: an issuer whose clock ran two hours ago, with a one-hour TTL.
	past, err := iam.NewIssuer(iam.IssuerConfig{Account: testAccount, TTL: time.Hour, Clock: clock.NewFake(time.Now().Add(-2 * time.Hour)), Logger: testLogger(t)})
	must(t, err)
	old, err := past.Issue(appRole, "i-0fffffffffffffff6")
	must(t, err)
	must(t, st.client.PutCredentials(ctx, old))
	wantCode(t, "expired credentials", put(st.s3(old), "uploads", "e", "e"), "ExpiredToken")
	// Unsigned requests are anonymous: AccessDenied.
	for _, req := range []struct{ method, path string }{{"GET", "/materials/course-1/intro.pdf"}, {"PUT", "/uploads/anon"}, {"GET", "/materials?list-type=2"}} {
		r, err := http.NewRequestWithContext(ctx, req.method, st.url+req.path, bytes.NewReader(nil))
		must(t, err)
		resp, err := http.DefaultClient.Do(r)
		must(t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(b), "<Code>AccessDenied</Code>") {
			t.Fatalf("unsigned %s %s: %d %s", req.method, req.path, resp.StatusCode, b)
		}
	}
	// A revoked credential is unknown again.
	must(t, st.client.Revoke(ctx, st.nobody.AccessKeyID))
	wantCode(t, "revoked key", put(nobody, "uploads", "r", "r"), "InvalidAccessKeyId")
	if err := st.client.Revoke(ctx, st.nobody.AccessKeyID); err != ErrNotHeld {
		t.Fatalf("second revoke: %v, want ErrNotHeld", err)
	}

	s := st.waitStatus("the requests", func(s Status) bool {
		return s.RequestsFor("PutObject", "OK") == 3 && s.RequestsFor("GetObject", "AccessDenied") >= 4
	})
	if s.RequestsFor("PutObject", "InvalidToken") != 2 || s.RequestsFor("PutObject", "SignatureDoesNotMatch") != 1 {
		t.Errorf("status requests: %+v", s.Requests)
	}
	s = st.waitStatus("the objects", func(s Status) bool {
		m, _ := s.Bucket("materials")
		u, _ := s.Bucket("uploads")
		return m.Objects == 2 && u.Objects == 0 && s.Scanned.After(s.Started)
	})
	if b, _ := s.Bucket("materials"); b.Bytes != int64(len("intro")+len("answers")) || !b.Policy {
		t.Errorf("materials status %+v", b)
	}
	if u, _ := s.Bucket("uploads"); u.Objects != 0 || u.Policy {
		t.Errorf("uploads status %+v", u)
	}
	// The count is republished every PublishInterval: wait for the
	// snapshot that follows the revocation.
	st.waitStatus("2 live credentials (app and edge; nobody was revoked, one expired, one never registered)", func(s Status) bool {
		return s.Credentials == 2
	})
}

// TestBrowserUpload is the teacher's upload as a browser page makes it: the
// app presigns a PUT (AWS SDK for Go), the page on the app's origin sends a
// CORS preflight and then the PUT straight to the store.
func TestBrowserUpload(t *testing.T) {
	st := startStore(t, baseConfig(t))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const origin = "https://courses.example.edu"
	presigned, err := s3.NewPresignClient(st.s3(st.app)).PresignPutObject(ctx,
		&s3.PutObjectInput{Bucket: aws.String("uploads"), Key: aws.String("course-1/week1.pdf"), ContentType: aws.String("application/pdf")},
		s3.WithPresignExpires(10*time.Minute))
	must(t, err)

	preflight := func(from string) *http.Response {
		req, err := http.NewRequestWithContext(ctx, http.MethodOptions, presigned.URL, nil)
		must(t, err)
		req.Header.Set("Origin", from)
		req.Header.Set("Access-Control-Request-Method", "PUT")
		req.Header.Set("Access-Control-Request-Headers", "content-type")
		resp, err := http.DefaultClient.Do(req)
		must(t, err)
		resp.Body.Close()
		return resp
	}
	if resp := preflight(origin); resp.StatusCode != http.StatusOK || resp.Header.Get("Access-Control-Allow-Origin") != origin ||
		!strings.Contains(resp.Header.Get("Access-Control-Allow-Methods"), "PUT") {
		t.Fatalf("preflight from the app's origin: %d %v", resp.StatusCode, resp.Header)
	}
	if resp := preflight("https://evil.example"); resp.StatusCode != http.StatusForbidden || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("preflight from another origin: %d %v", resp.StatusCode, resp.Header)
	}

	req, err := http.NewRequestWithContext(ctx, http.MethodPut, presigned.URL, strings.NewReader("%PDF-1.7 week 1"))
	must(t, err)
	req.Header = presigned.SignedHeader.Clone()
	req.Header.Set("Origin", origin)
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Access-Control-Allow-Origin") != origin || !strings.Contains(resp.Header.Get("Access-Control-Expose-Headers"), "ETag") {
		t.Fatalf("presigned PUT from the page: %d %v %s", resp.StatusCode, resp.Header, b)
	}
	out, err := st.s3(st.app).HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("uploads"), Key: aws.String("course-1/week1.pdf")})
	must(t, err)
	if *out.ContentLength != int64(len("%PDF-1.7 week 1")) || *out.ContentType != "application/pdf" {
		t.Fatalf("uploaded object: %d bytes, %s", *out.ContentLength, *out.ContentType)
	}
	// The presigned URL is bound to its key: another key is refused.
	other := strings.Replace(presigned.URL, "week1.pdf", "week2.pdf", 1)
	req, _ = http.NewRequestWithContext(ctx, http.MethodPut, other, strings.NewReader("x"))
	req.Header = presigned.SignedHeader.Clone()
	resp, err = http.DefaultClient.Do(req)
	must(t, err)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("presigned URL reused for another key: %d", resp.StatusCode)
	}
	// The store's CORS rules are the configuration's.
	_, err = st.s3(st.app).DeleteBucketCors(ctx, &s3.DeleteBucketCorsInput{Bucket: aws.String("uploads")})
	wantCode(t, "delete bucket cors", err, "AccessDenied")
}
