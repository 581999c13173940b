package objstore

import (
	"context"
	"encoding/json"
	"os/exec"
	"testing"
	"time"

	"github.com/haven-platform/haven/internal/iam"
)

// debianPython is Debian's interpreter, which python3-boto3 installs into
// (the machine's default python3 may be another one, such as pyenv's).
const debianPython = "/usr/bin/python3"

// boto3Script uses boto3 the way an app would: put, get, presigned GET and
// PUT fetched with urllib, a presigned POST (a browser form upload) inside and
// beyond its content-length-range, and unsigned and wrong-identity requests.
const boto3Script = `
import json, sys, urllib.request, urllib.error, uuid
import boto3, botocore
from botocore.config import Config

ep, bucket = sys.argv[1], sys.argv[2]
cfg = Config(signature_version="s3v4", s3={"addressing_style": "path"}, retries={"max_attempts": 1})
s3 = boto3.client("s3", endpoint_url=ep, config=cfg)
out = {"boto3": boto3.__version__}

def code(fn):
    try:
        fn()
        return "OK"
    except botocore.exceptions.ClientError as e:
        return e.response["Error"]["Code"]

def http(req):
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()

s3.put_object(Bucket=bucket, Key="boto/hello.txt", Body=b"hello boto", ContentType="text/plain")
got = s3.get_object(Bucket=bucket, Key="boto/hello.txt")
out["get"] = got["Body"].read().decode()
out["content_type"] = got["ContentType"]

url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "boto/hello.txt"}, ExpiresIn=300)
out["presigned_get"] = http(url)

url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "boto/put.txt", "ContentType": "text/plain"}, ExpiresIn=300)
out["presigned_put"] = http(urllib.request.Request(url, data=b"put via presigned URL", method="PUT", headers={"Content-Type": "text/plain"}))
out["after_presigned_put"] = s3.get_object(Bucket=bucket, Key="boto/put.txt")["Body"].read().decode()

def post(key, size):
    p = s3.generate_presigned_post(bucket, key, Conditions=[["content-length-range", 1, 1024]], ExpiresIn=300)
    boundary = uuid.uuid4().hex
    body = b""
    for k, v in p["fields"].items():
        body += ("--%s\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n%s\r\n" % (boundary, k, v)).encode()
    body += ("--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"notes.txt\"\r\nContent-Type: text/plain\r\n\r\n" % boundary).encode()
    body += b"x" * size + ("\r\n--%s--\r\n" % boundary).encode()
    req = urllib.request.Request(p["url"], data=body, method="POST", headers={"Content-Type": "multipart/form-data; boundary=" + boundary})
    return {"fields": sorted(p["fields"]), "result": http(req)}

out["post"] = post("boto/posted.txt", 100)
out["post_size"] = s3.head_object(Bucket=bucket, Key="boto/posted.txt")["ContentLength"]
out["post_too_big"] = post("boto/too-big.txt", 2048)

anon = boto3.client("s3", endpoint_url=ep, config=Config(signature_version=botocore.UNSIGNED, s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
out["unsigned_get"] = code(lambda: anon.get_object(Bucket=bucket, Key="boto/hello.txt"))
print(json.dumps(out))
`

// TestBoto3 runs boto3 from Debian's python3-boto3 against the store, with
// the app's issued credentials in its environment.
func TestBoto3(t *testing.T) {
	if err := exec.Command(debianPython, "-c", "import boto3").Run(); err != nil {
		t.Fatalf("%s cannot import boto3 (%v): install Debian's python3-boto3 (scripts/setup does)", debianPython, err)
	}
	cfg := baseConfig(t)
	cfg.Roles["teacher"] = []iam.Policy{policy(allowS3([]string{"s3:PutObject"}, "arn:aws:s3:::uploads/teachers/*"))}
	st := startStore(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	var got struct {
		Boto3             string
		Get               string
		ContentType       string `json:"content_type"`
		PresignedGet      []any  `json:"presigned_get"`
		PresignedPut      []any  `json:"presigned_put"`
		AfterPresignedPut string `json:"after_presigned_put"`
		Post              struct {
			Fields []string
			Result []any
		}
		PostSize   int64 `json:"post_size"`
		PostTooBig struct {
			Result []any
		} `json:"post_too_big"`
		UnsignedGet string `json:"unsigned_get"`
	}
	out, err := newRunner(t, st.app).run(ctx, debianPython, "-c", boto3Script, st.url, "uploads")
	if err != nil {
		t.Fatalf("boto3 script: %v\n%s", err, out)
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("decode boto3 output: %v\n%s", err, out)
	}
	t.Logf("boto3 %s", got.Boto3)
	status := func(r []any) float64 {
		if len(r) != 2 {
			return 0
		}
		f, _ := r[0].(float64)
		return f
	}
	switch {
	case got.Get != "hello boto" || got.ContentType != "text/plain":
		t.Errorf("put/get: %q %q", got.Get, got.ContentType)
	case status(got.PresignedGet) != 200 || got.PresignedGet[1] != "hello boto":
		t.Errorf("presigned GET: %v", got.PresignedGet)
	case status(got.PresignedPut) != 200 || got.AfterPresignedPut != "put via presigned URL":
		t.Errorf("presigned PUT: %v, then %q", got.PresignedPut, got.AfterPresignedPut)
	case status(got.Post.Result) != 204 || got.PostSize != 100:
		t.Errorf("presigned POST: %v (fields %v), stored %d bytes", got.Post.Result, got.Post.Fields, got.PostSize)
	case status(got.PostTooBig.Result) != 400:
		t.Errorf("presigned POST beyond its content-length-range: %v", got.PostTooBig.Result)
	case got.UnsignedGet != "AccessDenied":
		t.Errorf("unsigned get: %s", got.UnsignedGet)
	}
	if !contains(got.Post.Fields, "x-amz-security-token") || !contains(got.Post.Fields, "x-amz-signature") {
		t.Errorf("presigned POST fields %v lack the session token or signature", got.Post.Fields)
	}

	// A teacher may PUT under uploads/teachers/ only. A presigned PUT there
	// works; a POST cannot be scoped to a prefix here (see postDecision), so
	// it is refused rather than allowed bucket-wide.
	teacher := st.issue("teacher", "i-0ddddddddddddddd4")
	const teacherScript = `
import json, sys, urllib.request, urllib.error, uuid
import boto3
from botocore.config import Config
ep = sys.argv[1]
s3 = boto3.client("s3", endpoint_url=ep, config=Config(signature_version="s3v4", s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
def http(req):
    try:
        with urllib.request.urlopen(req) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
url = s3.generate_presigned_url("put_object", Params={"Bucket": "uploads", "Key": "teachers/t1/syllabus.pdf"}, ExpiresIn=300)
put_in = http(urllib.request.Request(url, data=b"syllabus", method="PUT"))
url = s3.generate_presigned_url("put_object", Params={"Bucket": "uploads", "Key": "students/x.pdf"}, ExpiresIn=300)
put_out = http(urllib.request.Request(url, data=b"x", method="PUT"))
p = s3.generate_presigned_post("uploads", "teachers/t1/notes.txt", ExpiresIn=300)
b = uuid.uuid4().hex
body = b"".join(("--%s\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n%s\r\n" % (b, k, v)).encode() for k, v in p["fields"].items())
body += ("--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"n.txt\"\r\n\r\nnotes\r\n--%s--\r\n" % (b, b)).encode()
post = http(urllib.request.Request(p["url"], data=body, method="POST", headers={"Content-Type": "multipart/form-data; boundary=" + b}))
print(json.dumps([put_in, put_out, post]))
`
	out, err = newRunner(t, teacher).run(ctx, debianPython, "-c", teacherScript, st.url)
	if err != nil {
		t.Fatalf("teacher script: %v\n%s", err, out)
	}
	var codes []int
	if err := json.Unmarshal([]byte(out), &codes); err != nil || len(codes) != 3 {
		t.Fatalf("teacher script output: %v\n%s", err, out)
	}
	if codes[0] != 200 || codes[1] != 403 || codes[2] != 403 {
		t.Errorf("teacher: presigned PUT in prefix %d (want 200), outside %d (want 403), POST %d (want 403)", codes[0], codes[1], codes[2])
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
