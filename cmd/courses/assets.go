package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// Static files are versioned by content hash: style.css is published as
// style.3f2a9c1b0d4e.css, pages link the hashed name, and a hashed name's
// content never changes, so every cache may keep it for a year. A release
// uploads the hashed files to the bucket under static/ (what `aws s3 sync`
// of `courses static export` does); CloudFront serves /static/* from
// there, and the app serves the same names itself for whoever reaches it
// directly.

// immutableCacheControl is sent with hashed static files, here and in the bucket.
const immutableCacheControl = "public, max-age=31536000, immutable"

// asset is one static file.
type asset struct {
	// Name is its name in web/static ("style.css"); Hashed the published
	// name ("style.3f2a9c1b0d4e.css").
	Name, Hashed string
	Body         []byte
	ContentType  string
	// ETag is the quoted content hash.
	ETag string
}

// assets are the app's static files, by name and by hashed name.
type assets struct {
	byName, byHashed map[string]*asset
}

// loadAssets reads every file of fsys and names it by its content hash.
func loadAssets(fsys fs.FS) (*assets, error) {
	a := &assets{byName: map[string]*asset{}, byHashed: map[string]*asset{}}
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		h := hex.EncodeToString(sum[:])[:12]
		ext := path.Ext(p)
		ct := mime.TypeByExtension(ext)
		if ct == "" {
			ct = "application/octet-stream"
		}
		as := &asset{Name: p, Hashed: strings.TrimSuffix(p, ext) + "." + h + ext, Body: body, ContentType: ct, ETag: `"` + h + `"`}
		a.byName[as.Name], a.byHashed[as.Hashed] = as, as
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load static files: %w", err)
	}
	return a, nil
}

// Path is the URL path pages use for the static file name: its hashed name
// under /static/. An unknown name is a programming error in a template.
func (a *assets) Path(name string) (string, error) {
	as, ok := a.byName[name]
	if !ok {
		return "", fmt.Errorf("no static file %q in web/static", name)
	}
	return "/static/" + as.Hashed, nil
}

// list returns the assets sorted by hashed name.
func (a *assets) list() []*asset {
	out := make([]*asset, 0, len(a.byHashed))
	for _, as := range a.byHashed {
		out = append(out, as)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Hashed < out[j].Hashed })
	return out
}

// ServeHTTP serves /static/NAME: a hashed name for a year (immutable), a
// plain name (an old page's link) for an hour.
func (a *assets) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, "/static/")
	as, hashed := a.byHashed[name]
	if !hashed {
		as = a.byName[name]
	}
	if as == nil {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Type", as.ContentType)
	h.Set("ETag", as.ETag)
	if hashed {
		h.Set("Cache-Control", immutableCacheControl)
	} else {
		h.Set("Cache-Control", "public, max-age=3600")
	}
	if inm := r.Header.Get("If-None-Match"); inm != "" && strings.Contains(inm, as.ETag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Length", strconv.Itoa(len(as.Body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(as.Body)
	}
}

// exportAssets writes the hashed files into dir, for `aws s3 sync DIR
// s3://BUCKET/static/` in a deploy pipeline.
func exportAssets(a *assets, dir string) ([]string, error) {
	var out []string
	for _, as := range a.list() {
		p := filepath.Join(dir, filepath.FromSlash(as.Hashed))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return out, fmt.Errorf("export static files: %w", err)
		}
		if err := os.WriteFile(p, as.Body, 0o644); err != nil {
			return out, fmt.Errorf("export static files: %w", err)
		}
		out = append(out, as.Hashed)
	}
	return out, nil
}

// staticBucket is what publishing needs of S3.
type staticBucket interface {
	ListObjectsV2(ctx context.Context, in *s3.ListObjectsV2Input, opts ...func(*s3.Options)) (*s3.ListObjectsV2Output, error)
	PutObject(ctx context.Context, in *s3.PutObjectInput, opts ...func(*s3.Options)) (*s3.PutObjectOutput, error)
}

// PublishResult says what publishAssets did.
type PublishResult struct {
	Uploaded, Unchanged []string
}

// publishAssets uploads the hashed static files that the bucket does not
// hold yet under prefix, as `aws s3 sync` would: a hashed name that is
// there already holds the same bytes. Each is uploaded with its content
// type and a year-long immutable Cache-Control.
func publishAssets(ctx context.Context, a *assets, s3c staticBucket, bucket, prefix string) (PublishResult, error) {
	var res PublishResult
	have := map[string]int64{}
	in := &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(prefix)}
	for {
		out, err := s3c.ListObjectsV2(ctx, in)
		if err != nil {
			return res, fmt.Errorf("list s3://%s/%s: %w", bucket, prefix, err)
		}
		for _, o := range out.Contents {
			have[aws.ToString(o.Key)] = aws.ToInt64(o.Size)
		}
		if !aws.ToBool(out.IsTruncated) {
			break
		}
		in.ContinuationToken = out.NextContinuationToken
	}
	for _, as := range a.list() {
		key := prefix + as.Hashed
		if n, ok := have[key]; ok && n == int64(len(as.Body)) {
			res.Unchanged = append(res.Unchanged, key)
			continue
		}
		_, err := s3c.PutObject(ctx, &s3.PutObjectInput{
			Bucket: aws.String(bucket), Key: aws.String(key), Body: strings.NewReader(string(as.Body)),
			ContentLength: aws.Int64(int64(len(as.Body))), ContentType: aws.String(as.ContentType),
			CacheControl: aws.String(immutableCacheControl),
		})
		if err != nil {
			return res, fmt.Errorf("upload s3://%s/%s: %w", bucket, key, err)
		}
		res.Uploaded = append(res.Uploaded, key)
	}
	return res, nil
}
