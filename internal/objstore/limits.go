package objstore

import (
	"context"
	"io"
	"mime"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/gofiber/fiber/v3"
	"github.com/versity/versitygw/backend"
	"github.com/versity/versitygw/s3api/utils"
	"github.com/versity/versitygw/s3err"
	"github.com/versity/versitygw/s3response"
)

// The upload limit is enforced twice:
//
//   - early, from the declared size (Content-Length, or
//     X-Amz-Decoded-Content-Length for aws-chunked bodies), before the
//     signature is checked, so an oversized body is refused before it is
//     stored; the body is then read and discarded (up to drainLimit, within
//     drainTimeout) so the client, which was already told to continue by the
//     server, reads the EntityTooLarge error instead of a reset connection;
//   - exactly, in limitedBackend, on the size versitygw parsed: PUT object,
//     upload part, POST upload (whose file size is only known from the form)
//     and the sum of the parts a CompleteMultipartUpload names.
const (
	// postFormSlack is what a POST upload's form may add to the file: the
	// early check refuses a form larger than the limit plus this.
	postFormSlack = 1 << 20
	drainLimit    = 256 << 20
	drainTimeout  = 30 * time.Second
)

// limitedBackend is the posix backend with haven's upload limit.
type limitedBackend struct {
	backend.Backend
	max      *atomic.Int64 // the limit in bytes
	rejected func()        // counts a refusal
}

// tooLarge counts a refusal and reads what is left of body (up to
// drainLimit), so the client gets to read the error.
func (b *limitedBackend) tooLarge(size int64, body io.Reader) error {
	if b.rejected != nil {
		b.rejected()
	}
	if body != nil {
		_, _ = io.CopyN(io.Discard, body, drainLimit)
	}
	return s3err.GetEntityTooLargeErr(size, b.max.Load())
}

// PutObject refuses a body larger than the limit (PUT and POST uploads).
func (b *limitedBackend) PutObject(ctx context.Context, in s3response.PutObjectInput) (s3response.PutObjectOutput, error) {
	if in.ContentLength != nil && *in.ContentLength > b.max.Load() {
		return s3response.PutObjectOutput{}, b.tooLarge(*in.ContentLength, in.Body)
	}
	return b.Backend.PutObject(ctx, in)
}

// UploadPart refuses a part larger than the limit.
func (b *limitedBackend) UploadPart(ctx context.Context, in *s3.UploadPartInput) (*s3.UploadPartOutput, error) {
	if in.ContentLength != nil && *in.ContentLength > b.max.Load() {
		return nil, b.tooLarge(*in.ContentLength, in.Body)
	}
	return b.Backend.UploadPart(ctx, in)
}

// CompleteMultipartUpload refuses to assemble an object larger than the
// limit; the upload stays, for the client to abort or the lifecycle rule to
// clean up.
func (b *limitedBackend) CompleteMultipartUpload(ctx context.Context, in *s3.CompleteMultipartUploadInput) (s3response.CompleteMultipartUploadResult, string, error) {
	if in.MultipartUpload != nil && len(in.MultipartUpload.Parts) > 0 {
		named := map[int32]bool{}
		for _, p := range in.MultipartUpload.Parts {
			if p.PartNumber != nil {
				named[*p.PartNumber] = true
			}
		}
		var total int64
		marker := ""
		for {
			m, maxParts := marker, int32(1000)
			res, err := b.Backend.ListParts(ctx, &s3.ListPartsInput{Bucket: in.Bucket, Key: in.Key, UploadId: in.UploadId, PartNumberMarker: &m, MaxParts: &maxParts})
			if err != nil {
				break // the backend reports the real problem below
			}
			for _, p := range res.Parts {
				if named[int32(p.PartNumber)] {
					total += p.Size
				}
			}
			if !res.IsTruncated || res.NextPartNumberMarker == 0 {
				break
			}
			marker = strconv.Itoa(res.NextPartNumberMarker)
		}
		if total > b.max.Load() {
			return s3response.CompleteMultipartUploadResult{}, "", b.tooLarge(total, nil)
		}
	}
	return b.Backend.CompleteMultipartUpload(ctx, in)
}

// declaredUpload returns the size an upload request declares and the S3
// action it is, or ok=false when the request uploads nothing.
func declaredUpload(ctx fiber.Ctx) (size int64, action string, ok bool) {
	h := &ctx.Request().Header
	switch ctx.Method() {
	case http.MethodPut:
		if ctx.Get("X-Amz-Copy-Source") != "" {
			return 0, "", false
		}
		action = "PutObject"
		if ctx.Query("uploadId") != "" && ctx.Query("partNumber") != "" {
			action = "UploadPart"
		}
		if d := ctx.Get("X-Amz-Decoded-Content-Length"); d != "" {
			n, err := strconv.ParseInt(d, 10, 64)
			return n, action, err == nil
		}
	case http.MethodPost:
		mt, _, err := mime.ParseMediaType(ctx.Get("Content-Type"))
		if err != nil || mt != "multipart/form-data" {
			return 0, "", false
		}
		action = "PostObject"
	default:
		return 0, "", false
	}
	n := h.ContentLength()
	return int64(n), action, n > 0
}

// limitMiddleware refuses a declared oversized upload early (see above).
func (s *server) limitMiddleware(ctx fiber.Ctx) error {
	size, action, ok := declaredUpload(ctx)
	if !ok {
		return ctx.Next()
	}
	max := s.max.Load()
	limit := max
	if action == "PostObject" {
		limit += postFormSlack
	}
	if size <= limit {
		return ctx.Next()
	}
	s.stats.count(action, "EntityTooLarge")
	s.stats.rejected.Add(1)
	drainBody(ctx)
	requestID, hostID := utils.EnsureRequestIDs(ctx)
	e := s3err.GetEntityTooLargeErr(size, max)
	ctx.Response().Header.SetContentType(fiber.MIMEApplicationXML)
	ctx.Response().Header.SetConnectionClose()
	return ctx.Status(e.StatusCode()).Send(e.XMLBody(requestID, hostID))
}

// drainBody reads and discards what the client sends of a refused body, up
// to drainLimit within drainTimeout; past that the connection is closed.
func drainBody(ctx fiber.Ctx) {
	stream := ctx.Request().BodyStream()
	if stream == nil {
		return
	}
	if c := ctx.RequestCtx().Conn(); c != nil {
		_ = c.SetReadDeadline(time.Now().Add(drainTimeout))
		defer c.SetReadDeadline(time.Time{})
	}
	_, _ = io.CopyN(io.Discard, stream, drainLimit)
}
