package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// linkMaterials fills each material's URL for the user d was read for: a
// signed URL at the edge (or the app's object path) for one in the
// bucket, the download path for one still in the database.
func (s *Server) linkMaterials(ctx context.Context, d *CourseDetail) error {
	for i := range d.Materials {
		m := &d.Materials[i]
		if m.ObjectKey == "" || s.materials == nil {
			m.URL = fmt.Sprintf("/courses/%d/materials/%d/download", d.Course.ID, m.ID)
			continue
		}
		u, err := s.materials.Link(ctx, d.Course.ID, m.ObjectKey)
		if err != nil {
			return err
		}
		m.URL = u
	}
	return nil
}

func (s *Server) maxUpload() int64 {
	if s.materials == nil {
		return 0
	}
	return s.materials.cfg.MaxUpload
}

// redirectToObject sends an old download link to the material's URL in the
// bucket (signed for the edge).
func (s *Server) redirectToObject(w http.ResponseWriter, r *http.Request, courseID int64, key string) {
	if s.materials == nil {
		s.dbError(w, r, ErrNotFound)
		return
	}
	u, err := s.materials.Link(r.Context(), courseID, key)
	if err != nil {
		s.log.Warn("sign material URL", "path", r.URL.Path, "request_id", requestID(r), "err", err)
		s.renderError(w, r, http.StatusServiceUnavailable, "Temporarily unavailable", "The file cannot be offered just now. Please try again in a few seconds.")
		return
	}
	w.Header().Set("Cache-Control", "private, no-store")
	http.Redirect(w, r, u, http.StatusFound)
}

// objectDownload serves a material at its bucket path to a user who may see
// its course: what the edge does with a signed URL, for whoever reaches
// the app directly. The signed URL's query, if any, is not needed here:
// the session decides.
func (s *Server) objectDownload(w http.ResponseWriter, r *http.Request, sess Session, _ string) {
	key := s.materials.cfg.Prefix + r.PathValue("key")
	m, _, err := s.store.MaterialByKey(r.Context(), sess.User, key)
	if err != nil {
		s.dbError(w, r, err)
		return
	}
	body, size, ctype, err := s.materials.Open(r.Context(), key)
	if errors.Is(err, errObjectMissing) {
		s.dbError(w, r, ErrNotFound)
		return
	}
	if err != nil {
		s.log.Warn("read material from the bucket", "key", key, "request_id", requestID(r), "err", err)
		w.Header().Set("Retry-After", "5")
		s.renderError(w, r, http.StatusServiceUnavailable, "Temporarily unavailable", "The file cannot be read just now. Please try again in a few seconds.")
		return
	}
	defer body.Close()
	if ctype == "" {
		ctype = m.ContentType
	}
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	w.Header().Set("Content-Disposition", mime.FormatMediaType("inline", map[string]string{"filename": m.Filename}))
	w.Header().Set("Cache-Control", "private, max-age=300")
	_, _ = io.Copy(w, body)
}

// uploadRequest announces a teacher's upload.
type uploadRequest struct {
	Title       string `json:"title"`
	Filename    string `json:"filename"`
	ContentType string `json:"content_type"`
	Size        int64  `json:"size"`
}

// uploadResponse tells the browser where to PUT the file.
type uploadResponse struct {
	UploadID int64 `json:"upload_id"`
	// URL is the presigned PUT, valid until ExpiresAt.
	URL       string    `json:"url"`
	Method    string    `json:"method"`
	ExpiresAt time.Time `json:"expires_at"`
	// Headers must be sent with the PUT exactly (they are signed).
	Headers map[string]string `json:"headers"`
	// Complete is where to POST once the PUT has succeeded.
	Complete string `json:"complete"`
}

// validateUpload checks an announced upload field by field. It is pure.
func validateUpload(in uploadRequest, max int64) (uploadRequest, map[string]string) {
	errs := map[string]string{}
	in.Title = strings.TrimSpace(in.Title)
	if in.Title == "" || utf8.RuneCountInString(in.Title) > 200 || !utf8.ValidString(in.Title) {
		errs["title"] = "Enter a title of up to 200 characters, for example Week 3 slides."
	}
	if strings.TrimSpace(in.Filename) == "" || len(in.Filename) > 255 {
		errs["filename"] = "Choose a file with a name of up to 255 characters."
	}
	in.Filename = safeFilename(in.Filename)
	if in.ContentType == "" {
		in.ContentType = "application/octet-stream"
	}
	if _, _, err := mime.ParseMediaType(in.ContentType); err != nil || len(in.ContentType) > 100 {
		errs["content_type"] = "The file's type was not understood; upload it as application/octet-stream."
	}
	switch {
	case in.Size < 1:
		errs["size"] = "The file is empty: choose a file with content."
	case in.Size > max:
		errs["size"] = fmt.Sprintf("The file is %s, above the limit of %s: make it smaller (compress it, or split it) and upload again.", humanBytes(in.Size), humanBytes(max))
	}
	return in, errs
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}

// apiStartUpload records a teacher's upload and returns a presigned PUT
// straight to the bucket: the file never passes through the app.
func (s *Server) apiStartUpload(w http.ResponseWriter, r *http.Request, sess Session, _ string) {
	id, ok := pathID(r, "id")
	if !ok || !sess.User.IsTeacher() {
		writeJSON(w, http.StatusForbidden, map[string]string{"error": "only the course's teacher can upload materials"})
		return
	}
	var in uploadRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxFormBytes)).Decode(&in); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": `body must be {"title", "filename", "content_type", "size"}`})
		return
	}
	in, errs := validateUpload(in, s.materials.cfg.MaxUpload)
	if len(errs) > 0 {
		status := http.StatusBadRequest
		if _, big := errs["size"]; big && in.Size > 0 {
			status = http.StatusRequestEntityTooLarge
		}
		writeJSON(w, status, map[string]any{"error": "upload refused", "fields": errs, "max_upload": s.materials.cfg.MaxUpload})
		return
	}
	up, err := s.store.CreateUpload(r.Context(), sess.User, id, in.Title, in.Filename, in.ContentType, in.Size,
		func(uid int64) string { return s.materials.Key(id, "u"+strconv.FormatInt(uid, 10), in.Filename) })
	if errors.Is(err, ErrNotFound) {
		writeJSON(w, http.StatusForbidden, map[string]string{"error": "only the course's teacher can upload materials"})
		return
	}
	if err != nil {
		s.apiDBError(w, r, err)
		return
	}
	req, err := s.materials.PresignUpload(r.Context(), up.ObjectKey, up.ContentType, up.Size)
	if err != nil {
		s.log.Warn("presign upload", "request_id", requestID(r), "err", err)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "the file store cannot take uploads just now; try again shortly"})
		return
	}
	out := uploadResponse{UploadID: up.ID, URL: req.URL, Method: req.Method, ExpiresAt: time.Now().Add(s.materials.cfg.UploadURLTTL).UTC(),
		Headers: map[string]string{}, Complete: fmt.Sprintf("/api/courses/%d/materials/uploads/%d/complete", id, up.ID)}
	for k, v := range req.Header {
		// The browser sets these itself (and may not set them by hand).
		if lk := strings.ToLower(k); lk != "host" && lk != "content-length" && len(v) > 0 {
			out.Headers[k] = v[0]
		}
	}
	s.log.Info("upload started", "course", id, "upload", up.ID, "key", up.ObjectKey, "size", up.Size)
	writeJSON(w, http.StatusOK, out)
}

// apiCompleteUpload checks that the announced file is in the bucket, with
// its announced size, and makes it a material of the course.
func (s *Server) apiCompleteUpload(w http.ResponseWriter, r *http.Request, sess Session, _ string) {
	id, ok1 := pathID(r, "id")
	uid, ok2 := pathID(r, "uid")
	if !ok1 || !ok2 || !sess.User.IsTeacher() {
		writeJSON(w, http.StatusForbidden, map[string]string{"error": "only the course's teacher can upload materials"})
		return
	}
	up, err := s.store.UploadOf(r.Context(), sess.User, id, uid)
	if err != nil {
		s.apiDBError(w, r, err)
		return
	}
	size, err := s.materials.Stat(r.Context(), up.ObjectKey)
	switch {
	case errors.Is(err, errObjectMissing):
		writeJSON(w, http.StatusConflict, map[string]string{"error": "the file has not arrived in the store: PUT it to the upload URL first, then confirm"})
		return
	case err != nil:
		s.log.Warn("check upload", "request_id", requestID(r), "err", err)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "the file store cannot be reached just now; confirm again shortly"})
		return
	case size != up.Size:
		writeJSON(w, http.StatusConflict, map[string]string{"error": fmt.Sprintf("%v: announced %d bytes, the store holds %d; upload it again", ErrUploadMismatch, up.Size, size)})
		return
	}
	m, err := s.store.CompleteUpload(r.Context(), up)
	if err != nil {
		s.apiDBError(w, r, err)
		return
	}
	if m.URL, err = s.materials.Link(r.Context(), id, m.ObjectKey); err != nil {
		m.URL = ""
	}
	s.log.Info("upload completed", "course", id, "upload", up.ID, "material", m.ID, "size", size)
	writeJSON(w, http.StatusOK, map[string]any{"material": m})
}
