package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
)

// fakeBucket is an in-memory bucket: the S3 calls the app makes, and an
// HTTP endpoint that takes presigned PUTs. The real bucket (haven's object
// store, with the SDK and the aws CLI) is tested in the region's end-to-end
// test; this one checks what the app does with it.
type fakeBucket struct {
	mu      sync.Mutex
	objects map[string]fakeObject
	puts    int
	srv     *httptest.Server
}

type fakeObject struct {
	body             []byte
	ctype, cacheCtrl string
}

type s3NotFound struct{ code string }

func (e s3NotFound) Error() string     { return e.code }
func (e s3NotFound) ErrorCode() string { return e.code }

func newFakeBucket(t *testing.T) *fakeBucket {
	b := &fakeBucket{objects: map[string]fakeObject{}}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// CORS, as the region's bucket rule: pages of another origin may PUT.
		w.Header().Set("Access-Control-Allow-Origin", "*")
		if r.Method == http.MethodOptions {
			w.Header().Set("Access-Control-Allow-Methods", "PUT")
			w.Header().Set("Access-Control-Allow-Headers", r.Header.Get("Access-Control-Request-Headers"))
			return
		}
		if r.Method != http.MethodPut {
			http.Error(w, "only PUT", http.StatusMethodNotAllowed)
			return
		}
		body, _ := io.ReadAll(r.Body)
		b.mu.Lock()
		b.objects[strings.TrimPrefix(r.URL.Path, "/")] = fakeObject{body: body, ctype: r.Header.Get("Content-Type"), cacheCtrl: r.Header.Get("Cache-Control")}
		b.mu.Unlock()
	}))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *fakeBucket) ListObjectsV2(_ context.Context, in *s3.ListObjectsV2Input, _ ...func(*s3.Options)) (*s3.ListObjectsV2Output, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := &s3.ListObjectsV2Output{IsTruncated: aws.Bool(false)}
	var keys []string
	for k := range b.objects {
		if strings.HasPrefix(k, aws.ToString(in.Prefix)) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		out.Contents = append(out.Contents, types.Object{Key: aws.String(k), Size: aws.Int64(int64(len(b.objects[k].body)))})
	}
	return out, nil
}

func (b *fakeBucket) PutObject(_ context.Context, in *s3.PutObjectInput, _ ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
	body, _ := io.ReadAll(in.Body)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.puts++
	b.objects[aws.ToString(in.Key)] = fakeObject{body: body, ctype: aws.ToString(in.ContentType), cacheCtrl: aws.ToString(in.CacheControl)}
	return &s3.PutObjectOutput{}, nil
}

func (b *fakeBucket) GetObject(_ context.Context, in *s3.GetObjectInput, _ ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	o, ok := b.objects[aws.ToString(in.Key)]
	if !ok {
		return nil, s3NotFound{"NoSuchKey"}
	}
	return &s3.GetObjectOutput{Body: io.NopCloser(bytes.NewReader(o.body)), ContentLength: aws.Int64(int64(len(o.body))), ContentType: aws.String(o.ctype)}, nil
}

func (b *fakeBucket) HeadObject(_ context.Context, in *s3.HeadObjectInput, _ ...func(*s3.Options)) (*s3.HeadObjectOutput, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	o, ok := b.objects[aws.ToString(in.Key)]
	if !ok {
		return nil, s3NotFound{"NotFound"}
	}
	return &s3.HeadObjectOutput{ContentLength: aws.Int64(int64(len(o.body)))}, nil
}

func (b *fakeBucket) PresignPutObject(_ context.Context, in *s3.PutObjectInput, _ ...func(*s3.PresignOptions)) (*v4Request, error) {
	return &v4Request{URL: b.srv.URL + "/" + aws.ToString(in.Key), Method: "PUT",
		Header: map[string][]string{"Host": {"x"}, "Content-Length": {fmt.Sprint(aws.ToInt64(in.ContentLength))},
			"Content-Type": {aws.ToString(in.ContentType)}, "Cache-Control": {aws.ToString(in.CacheControl)}}}, nil
}

// fakeKeySecret holds the signing key.
type fakeKeySecret struct {
	pem   string
	calls int
}

func (f *fakeKeySecret) GetSecretValue(_ context.Context, in *secretsmanager.GetSecretValueInput, _ ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error) {
	f.calls++
	if aws.ToString(in.SecretId) != "courses/cloudfront-signing-key" {
		return nil, errors.New("ResourceNotFoundException")
	}
	return &secretsmanager.GetSecretValueOutput{SecretString: aws.String(f.pem), VersionId: aws.String("v1")}, nil
}

type signerClock struct{ now time.Time }

func (c *signerClock) Now() time.Time                       { return c.now }
func (c *signerClock) After(time.Duration) <-chan time.Time { return make(chan time.Time) }

func testKey(t *testing.T) (*rsa.PrivateKey, string) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	return k, string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

// cfDecode undoes CloudFront's URL-safe base64 (- for +, _ for =, ~ for /).
func cfDecode(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(strings.NewReplacer("-", "+", "_", "=", "~", "/").Replace(s))
	if err != nil {
		t.Fatalf("decode %q: %v", s, err)
	}
	return b
}

func TestMaterialSigner(t *testing.T) {
	key, pemKey := testKey(t)
	sm := &fakeKeySecret{pem: pemKey}
	clk := &signerClock{now: time.Unix(1_800_000_000, 0)}
	s := newMaterialSigner(MaterialsConfig{KeyPairID: "KTEST", SigningKeySecretID: "courses/cloudfront-signing-key", URLTTL: time.Hour}, sm, clk, testLogger(t))
	ctx := context.Background()
	q1, err := s.query(ctx, 7, "/materials/courses/7/")
	if err != nil {
		t.Fatal(err)
	}
	v, err := url.ParseQuery(q1)
	if err != nil {
		t.Fatal(err)
	}
	if v.Get("Key-Pair-Id") != "KTEST" || v.Get("Policy") == "" || v.Get("Signature") == "" || v.Get("Expires") != "" {
		t.Fatalf("query %q: want a custom policy (Policy, Signature, Key-Pair-Id)", q1)
	}
	doc := cfDecode(t, v.Get("Policy"))
	var p struct {
		Statement []struct {
			Resource  string
			Condition struct {
				DateLessThan struct {
					Epoch int64 `json:"AWS:EpochTime"`
				}
			}
		}
	}
	if err := json.Unmarshal(doc, &p); err != nil || len(p.Statement) != 1 {
		t.Fatalf("policy %s: %v", doc, err)
	}
	if st := p.Statement[0]; st.Resource != "https://*/materials/courses/7/*" || st.Condition.DateLessThan.Epoch != clk.now.Add(time.Hour).Unix() {
		t.Errorf("policy = %s, want the course's prefix until now+1h", doc)
	}
	// The signature is RSA PKCS #1 v1.5 over SHA-1 of the policy, as CloudFront verifies it.
	sum := sha1.Sum(doc)
	if err := rsa.VerifyPKCS1v15(&key.PublicKey, crypto.SHA1, sum[:], cfDecode(t, v.Get("Signature"))); err != nil {
		t.Errorf("signature does not verify with the public key: %v", err)
	}
	// Reused within half the TTL; renewed after; one secret read in all.
	clk.now = clk.now.Add(29 * time.Minute)
	if q, _ := s.query(ctx, 7, "/materials/courses/7/"); q != q1 {
		t.Error("signature not reused within half its life")
	}
	clk.now = clk.now.Add(2 * time.Minute)
	if q, _ := s.query(ctx, 7, "/materials/courses/7/"); q == q1 {
		t.Error("signature reused after half its life")
	}
	if q8, _ := s.query(ctx, 8, "/materials/courses/8/"); q8 == q1 || !strings.Contains(string(cfDecode(t, mustQuery(t, q8).Get("Policy"))), "courses/8/") {
		t.Error("course 8 got course 7's policy")
	}
	if sm.calls != 1 {
		t.Errorf("secret read %d times, want once", sm.calls)
	}
}

func mustQuery(t *testing.T, q string) url.Values {
	v, err := url.ParseQuery(q)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestParseSigningKeyRefusesOthers(t *testing.T) {
	for _, in := range []string{"", "not pem", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"} {
		if _, err := parseSigningKey([]byte(in)); err == nil {
			t.Errorf("parseSigningKey(%q) accepted it", in)
		} else if strings.Contains(err.Error(), "AAAA") {
			t.Errorf("error repeats the input: %v", err)
		}
	}
}

func TestValidateUpload(t *testing.T) {
	ok, errs := validateUpload(uploadRequest{Title: " Week 3 ", Filename: `C:\Users\me\Week 3 (final).pdf`, ContentType: "application/pdf", Size: 10}, 100)
	if len(errs) != 0 || ok.Title != "Week 3" || ok.Filename != "Week-3-final-.pdf" {
		t.Errorf("valid upload: %+v %v", ok, errs)
	}
	for _, tt := range []struct {
		in    uploadRequest
		field string
	}{
		{uploadRequest{Title: "", Filename: "a", Size: 1}, "title"},
		{uploadRequest{Title: strings.Repeat("x", 201), Filename: "a", Size: 1}, "title"},
		{uploadRequest{Title: "t", Filename: "", Size: 1}, "filename"},
		{uploadRequest{Title: "t", Filename: "a", Size: 0}, "size"},
		{uploadRequest{Title: "t", Filename: "a", Size: 101}, "size"},
		{uploadRequest{Title: "t", Filename: "a", Size: 1, ContentType: "no type"}, "content_type"},
	} {
		if _, errs := validateUpload(tt.in, 100); errs[tt.field] == "" {
			t.Errorf("validateUpload(%+v): no error for %s (%v)", tt.in, tt.field, errs)
		}
	}
	if _, errs := validateUpload(uploadRequest{Title: "t", Filename: "a", Size: 150 << 20}, 100<<20); !strings.Contains(errs["size"], "150.0 MiB, above the limit of 100.0 MiB") {
		t.Errorf("oversized message = %q", errs["size"])
	}
}

func TestAssetsHashedAndPublished(t *testing.T) {
	a, err := loadAssets(fstest.MapFS{"style.css": {Data: []byte("body{}")}, "app.js": {Data: []byte("x")}})
	if err != nil {
		t.Fatal(err)
	}
	p, err := a.Path("style.css")
	if err != nil || !regexp.MustCompile(`^/static/style\.[0-9a-f]{12}\.css$`).MatchString(p) {
		t.Fatalf("Path = %q, %v", p, err)
	}
	if _, err := a.Path("nope.css"); err == nil {
		t.Error("Path of an unknown file succeeded")
	}
	for _, tt := range []struct{ path, cache string }{{p, immutableCacheControl}, {"/static/style.css", "public, max-age=3600"}} {
		rec := httptest.NewRecorder()
		a.ServeHTTP(rec, httptest.NewRequest("GET", tt.path, nil))
		if rec.Code != 200 || rec.Body.String() != "body{}" || rec.Header().Get("Cache-Control") != tt.cache || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/css") {
			t.Errorf("GET %s: %d %q %v", tt.path, rec.Code, rec.Body.String(), rec.Header())
		}
	}
	b := newFakeBucket(t)
	res, err := publishAssets(context.Background(), a, b, "bucket", "static/")
	if err != nil || len(res.Uploaded) != 2 || len(res.Unchanged) != 0 {
		t.Fatalf("first publish: %+v %v", res, err)
	}
	if o := b.objects[strings.TrimPrefix(p, "/")]; string(o.body) != "body{}" || o.cacheCtrl != immutableCacheControl || !strings.HasPrefix(o.ctype, "text/css") {
		t.Errorf("published object = %+v", o)
	}
	// As aws s3 sync: a second run uploads nothing.
	res, err = publishAssets(context.Background(), a, b, "bucket", "static/")
	if err != nil || len(res.Uploaded) != 0 || len(res.Unchanged) != 2 || b.puts != 2 {
		t.Errorf("second publish: %+v %v (%d puts)", res, err, b.puts)
	}
	dir := t.TempDir()
	names, err := exportAssets(a, dir)
	if err != nil || len(names) != 2 {
		t.Errorf("export: %v %v", names, err)
	}
}

// testMaterials is a Materials on a fake bucket and a fake key store.
func testMaterials(t *testing.T, b *fakeBucket, signed bool) *Materials {
	cfg := MaterialsConfig{Bucket: "courses-assets", MaxUpload: 1 << 20}
	if signed {
		cfg.KeyPairID, cfg.SigningKeySecretID = "KTEST", "courses/cloudfront-signing-key"
	}
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	m := &Materials{cfg: cfg, s3: b, presign: b, origin: b.srv.URL, log: testLogger(t)}
	if signed {
		_, pemKey := testKey(t)
		m.signer = newMaterialSigner(cfg, &fakeKeySecret{pem: pemKey}, systemClock{}, m.log)
	}
	return m
}

// TestMaterialsInTheBucket moves the seed's materials out of the database,
// then walks a teacher's upload and students' downloads through the app.
func TestMaterialsInTheBucket(t *testing.T) {
	pg := startPG(t)
	log := testLogger(t)
	db := seededDB(t, pg, log)
	ctx := context.Background()
	b := newFakeBucket(t)
	m := testMaterials(t, b, true)

	var before []byte
	if err := db.Pool().QueryRow(ctx, `SELECT content FROM materials WHERE id = 1`).Scan(&before); err != nil {
		t.Fatal(err)
	}
	res, err := MoveMaterials(ctx, db, m, 4)
	if err != nil || res.Moved != 15 {
		t.Fatalf("move: %+v %v, want 15 moved", res, err)
	}
	var left, empty int
	var key string
	if err := db.Pool().QueryRow(ctx, `SELECT count(*) FILTER (WHERE object_key IS NULL), count(*) FILTER (WHERE octet_length(content) = 0),
		(SELECT object_key FROM materials WHERE id = 1) FROM materials`).Scan(&left, &empty, &key); err != nil {
		t.Fatal(err)
	}
	if left != 0 || empty != 15 || key != "materials/courses/1/1/syllabus-1.pdf" {
		t.Errorf("after the move: %d rows without object_key, %d emptied, material 1 at %q", left, empty, key)
	}
	if o := b.objects[key]; !bytes.Equal(o.body, before) || o.ctype != "application/pdf" || o.cacheCtrl != materialCacheControl {
		t.Errorf("bucket holds %d bytes (%q, %q) for material 1, the database held %d", len(o.body), o.ctype, o.cacheCtrl, len(before))
	}
	if res, err := MoveMaterials(ctx, db, m, 4); err != nil || res.Moved != 0 {
		t.Errorf("second move: %+v %v, want nothing to do", res, err)
	}

	s, err := NewServer(ServerConfig{DB: db, Logger: log, Materials: m})
	if err != nil {
		t.Fatal(err)
	}
	base := newHTTPTestServer(t, s)
	if csp := func() string {
		r, _ := newClient(t, base).get("/login")
		return r.Header.Get("Content-Security-Policy")
	}(); !strings.Contains(csp, "connect-src 'self' "+b.srv.URL) {
		t.Errorf("CSP %q does not let pages upload to the bucket", csp)
	}

	// A student of course 1 gets signed links to the edge's paths.
	var student, outsider, otherKey string
	var other int64
	if err := db.Pool().QueryRow(ctx, `SELECT u.email FROM enrolments e JOIN users u ON u.id = e.student_id WHERE e.course_id = 1 ORDER BY u.id LIMIT 1`).Scan(&student); err != nil {
		t.Fatal(err)
	}
	// Someone not enrolled in a course (course 1 has every seeded student).
	if err := db.Pool().QueryRow(ctx, `SELECT c.id, u.email, (SELECT object_key FROM materials WHERE course_id = c.id ORDER BY id LIMIT 1)
		FROM courses c CROSS JOIN users u WHERE u.role = 'student' AND NOT EXISTS
		(SELECT 1 FROM enrolments e WHERE e.course_id = c.id AND e.student_id = u.id) ORDER BY c.id, u.id LIMIT 1`).Scan(&other, &outsider, &otherKey); err != nil {
		t.Fatal(err)
	}
	sc := newClient(t, base)
	sc.apiLogin(student, testPassword)
	_, page := sc.get("/courses/1")
	link := regexp.MustCompile(`href="(/materials/courses/1/1/syllabus-1\.pdf\?Policy=[^"]+)"`).FindStringSubmatch(page)
	if link == nil {
		t.Fatalf("course page has no signed link to material 1:\n%s", page)
	}
	// Directly at the app (not through the edge) the path serves the bytes
	// to a student of the course.
	resp, body := sc.get(strings.ReplaceAll(link[1], "&amp;", "&"))
	if resp.StatusCode != 200 || body != string(before) {
		t.Errorf("GET the material at the app: %d, %d bytes", resp.StatusCode, len(body))
	}
	// The old download link redirects to the signed URL.
	resp, _ = sc.get("/courses/1/materials/1/download")
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc, "/materials/courses/1/1/syllabus-1.pdf?Policy=") {
		t.Errorf("old download link: %d → %q", resp.StatusCode, loc)
	}
	oc := newClient(t, base)
	oc.apiLogin(outsider, testPassword)
	if resp, _ := oc.get("/" + otherKey); resp.StatusCode != http.StatusNotFound {
		t.Errorf("a student not enrolled in course %d got %d for its material at the app, want 404", other, resp.StatusCode)
	}
	if resp, _ := oc.get(fmt.Sprintf("/courses/%d", other)); resp.StatusCode != http.StatusNotFound {
		t.Errorf("a student not enrolled in course %d got %d for its page (and its signed links), want 404", other, resp.StatusCode)
	}

	// The teacher uploads straight to the bucket.
	tc := newClient(t, base)
	me := tc.apiLogin("teacher1@example.edu", testPassword)
	hdr := map[string]string{csrfHeader: me.CSRFToken}
	upload := func(body string) (*http.Response, string) {
		return tc.do("POST", "/api/courses/1/materials/uploads", "application/json", strings.NewReader(body), hdr)
	}
	if resp, body := upload(`{"title":"Huge","filename":"huge.bin","size":2097152}`); resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(body, "above the limit of 1.0 MiB") {
		t.Errorf("oversized upload: %d %s", resp.StatusCode, body)
	}
	if resp, _ := tc.do("POST", "/api/courses/1/materials/uploads", "application/json", strings.NewReader(`{"title":"x","filename":"x","size":1}`), nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("upload without the CSRF header: %d, want 403", resp.StatusCode)
	}
	if resp, _ := sc.do("POST", "/api/courses/1/materials/uploads", "application/json", strings.NewReader(`{"title":"x","filename":"x","size":1}`), map[string]string{csrfHeader: "x"}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("a student's upload: %d, want 403", resp.StatusCode)
	}
	content := "Week 3: the slides\n"
	resp, body = upload(fmt.Sprintf(`{"title":"Week 3 slides","filename":"week 3.txt","content_type":"text/plain","size":%d}`, len(content)))
	var up uploadResponse
	if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &up) != nil || !strings.HasPrefix(up.URL, b.srv.URL+"/materials/courses/1/u") || up.Method != "PUT" {
		t.Fatalf("start upload: %d %s", resp.StatusCode, body)
	}
	if _, ok := up.Headers["Host"]; ok || up.Headers["Content-Type"] != "text/plain" || up.Headers["Cache-Control"] != materialCacheControl {
		t.Errorf("headers to send = %v: want the signed ones but Host and Content-Length", up.Headers)
	}
	// Confirming before the file arrived is refused and changes nothing.
	if resp, body := tc.do("POST", up.Complete, "", nil, hdr); resp.StatusCode != http.StatusConflict || !strings.Contains(body, "has not arrived") {
		t.Errorf("complete before the PUT: %d %s", resp.StatusCode, body)
	}
	req, _ := http.NewRequest(up.Method, up.URL, strings.NewReader(content))
	for k, v := range up.Headers {
		req.Header.Set(k, v)
	}
	if put, err := http.DefaultClient.Do(req); err != nil || put.StatusCode != 200 {
		t.Fatalf("PUT to the bucket: %v %v", put, err)
	}
	resp, body = tc.do("POST", up.Complete, "", nil, hdr)
	if resp.StatusCode != 200 || !strings.Contains(body, `"title": "Week 3 slides"`) {
		t.Fatalf("complete: %d %s", resp.StatusCode, body)
	}
	// The student sees it, with a signed link, and can read it.
	_, page = sc.get("/courses/1")
	link = regexp.MustCompile(`href="(/materials/courses/1/u\d+/week-3\.txt\?Policy=[^"]+)"[^>]*>Week 3 slides<`).FindStringSubmatch(page)
	if link == nil {
		t.Fatalf("the student's course page does not list the upload:\n%s", page)
	}
	if resp, body := sc.get(strings.ReplaceAll(link[1], "&amp;", "&")); resp.StatusCode != 200 || body != content {
		t.Errorf("the student's download of the upload: %d %q", resp.StatusCode, body)
	}
	var inDB int
	if err := db.Pool().QueryRow(ctx, `SELECT octet_length(content) FROM materials WHERE title = 'Week 3 slides'`).Scan(&inDB); err != nil || inDB != 0 {
		t.Errorf("the upload's bytes in the database: %d (%v), want none", inDB, err)
	}
}

// TestUploadOrigin: the page's connect-src names where presigned uploads go,
// found from the SDK's endpoint rules without credentials (the app starts
// before its instance identity may be served).
func TestUploadOrigin(t *testing.T) {
	t.Setenv("AWS_REGION", "eu-west-1")
	t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:1") // nothing answers
	for _, tt := range []struct{ endpoint, browser, want string }{
		{"http://127.0.0.1:9000", "", "http://127.0.0.1:9000"},
		{"", "", "https://courses-assets.s3.eu-west-1.amazonaws.com"},
		// In a VPC the app goes through its zone's endpoint, browsers to the store.
		{"http://198.18.1.20:443", "http://127.0.0.1:9000", "http://127.0.0.1:9000"},
	} {
		t.Setenv("AWS_ENDPOINT_URL_S3", tt.endpoint)
		m, err := NewMaterials(context.Background(), MaterialsConfig{Bucket: "courses-assets", BrowserEndpoint: tt.browser}, testLogger(t))
		if err != nil || m.origin != tt.want {
			t.Errorf("endpoint %q, browser endpoint %q: origin %q, %v; want %q", tt.endpoint, tt.browser, m.origin, err, tt.want)
		}
	}
}
