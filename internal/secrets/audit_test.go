package secrets

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	awsmw "github.com/aws/aws-sdk-go-v2/aws/middleware"

	"github.com/haven-platform/haven/internal/clock"
)

// auditBytes is the size of the audit log and its rotated files.
func auditBytes(t *testing.T, path string) (int64, int) {
	t.Helper()
	files, err := filepath.Glob(path + "*")
	must(t, err)
	var n int64
	for _, f := range files {
		st, err := os.Stat(f)
		must(t, err)
		n += st.Size()
	}
	return n, len(files)
}

// A flood of unsigned requests with 8 KiB user agents, alongside signed
// calls: the log stays small (each source's failures are one record a
// window, every field bounded), rotation runs, and every signed call's
// record is kept and read back across the rotated files.
func TestAuditFloodStaysBoundedAndKeepsSignedEntries(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Audit = AuditConfig{MaxBytes: 4 << 10, Keep: 1000, Window: time.Hour} })
	ctx := t.Context()
	_, err := e.client(e.admin).CreateSecret(ctx, secretsCreate("db", dbValue1))
	must(t, err)

	const flooders, perFlooder, signed = 4, 500, 40
	ua := strings.Repeat("A", 8<<10)
	var wg sync.WaitGroup
	for range flooders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hc := &http.Client{}
			for i := range perFlooder {
				req, _ := http.NewRequest(http.MethodPost, e.srv.Endpoint(), strings.NewReader(`{"SecretId":"db"}`))
				req.Header.Set("User-Agent", ua)
				req.Header.Set("X-Amz-Target", "secretsmanager.GetSecretValue")
				if i%2 == 1 { // a forged signature, not only a missing one
					req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=ASIAXXXXXXXXXXXXXXXX/20260101/eu-west-1/secretsmanager/aws4_request, SignedHeaders=host;x-amz-date, Signature="+strings.Repeat("0", 64))
				}
				resp, err := hc.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusBadRequest {
					t.Errorf("unsigned request: status %d", resp.StatusCode)
				}
			}
		}()
	}
	app := e.client(e.app)
	var ids []string
	for range signed {
		out, err := app.GetSecretValue(ctx, secretsGet("db"))
		must(t, err)
		id, _ := awsmw.GetRequestIDMetadata(out.ResultMetadata)
		ids = append(ids, id)
	}
	wg.Wait()
	e.clk.Advance(2 * time.Hour) // every window ends
	must(t, e.srv.audit.Flush())

	size, files := auditBytes(t, e.srv.AuditPath())
	t.Logf("%d unsigned and %d signed requests: %d bytes in %d files", flooders*perFlooder, signed, size, files)
	if size > 64<<10 {
		t.Errorf("audit log holds %d bytes after the flood, want it bounded (< 64 KiB)", size)
	}
	if files < 2 {
		t.Errorf("%d audit files: the log was never rotated at 4 KiB", files)
	}
	recs, err := ReadAuditFile(e.srv.AuditPath(), AuditFilter{})
	must(t, err)
	got := map[string]AuditRecord{}
	unauth := 0
	for _, r := range recs {
		got[r.RequestID] = r
		if len(r.UserAgent) > maxUserAgent {
			t.Errorf("a record stores a %d-byte user agent", len(r.UserAgent))
		}
		if r.Principal == "" {
			unauth += max(r.Count, 1)
		}
	}
	for _, id := range ids {
		if r, ok := got[id]; !ok || r.Result != "Success" || r.Role != "app" {
			t.Errorf("signed request %s: record %+v, %v", id, r, ok)
		}
	}
	if unauth != flooders*perFlooder {
		t.Errorf("the records count %d unauthenticated failures, want %d: none may go uncounted", unauth, flooders*perFlooder)
	}
}

// Aggregation per source and window, on a fake clock: the first failure at
// once, the rest as one record with a count when the window ends; signed
// calls are never held back.
func TestAuditAggregatesUnauthenticatedFailuresPerWindow(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	path := filepath.Join(t.TempDir(), AuditFile)
	a, err := OpenAuditLog(path, AuditConfig{Window: time.Minute, Clock: clk})
	must(t, err)
	fail := func(src string) {
		must(t, a.Write(AuditRecord{Time: clk.Now(), Action: "GetSecretValue", Result: "MissingAuthenticationTokenException", SourceIP: src, UserAgent: strings.Repeat("x", 1000)}))
	}
	for range 10 {
		fail("127.0.1.9")
		fail("127.0.2.9")
		clk.Advance(time.Second)
	}
	must(t, a.Write(AuditRecord{Time: clk.Now(), RequestID: "signed", Principal: "arn:x", Action: "GetSecretValue", Result: "AccessDeniedException", SourceIP: "127.0.1.9"}))
	recs, err := ReadAuditFile(path, AuditFilter{})
	must(t, err)
	if len(recs) != 3 || recs[2].RequestID != "signed" {
		t.Fatalf("during the window: %d records %+v, want the two sources' first failures and the signed call", len(recs), recs)
	}
	clk.Advance(time.Minute)
	fail("127.0.1.9") // a new window: the last one's aggregate, then this failure
	recs, err = ReadAuditFile(path, AuditFilter{FailedOnly: true})
	must(t, err)
	if len(recs) != 6 {
		t.Fatalf("after the window: %d records %+v, want 6", len(recs), recs)
	}
	for _, r := range recs[3:5] {
		if r.Count != 9 || r.Until.Sub(r.Time) != 8*time.Second || len(r.UserAgent) > maxUserAgent {
			t.Errorf("aggregate = %+v, want count 9 over 8s with a bounded user agent", r)
		}
	}
	if recs[5].Count != 0 || recs[5].SourceIP != "127.0.1.9" {
		t.Errorf("first failure of the new window = %+v", recs[5])
	}
	if since, _ := ReadAuditFile(path, AuditFilter{Since: clk.Now().Add(-time.Minute - 2*time.Second)}); len(since) != 4 {
		t.Errorf("Since keeps an aggregate whose window ends after it: got %d records, want 4", len(since))
	}
	must(t, a.Close())
}

// Rotation loses no record, even with writers racing it; retention keeps
// the newest Keep files and deletes the oldest.
func TestAuditRotationKeepsEveryRecordAndAppliesRetention(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, AuditFile)
	a, err := OpenAuditLog(path, AuditConfig{MaxBytes: 2 << 10, Keep: 10000})
	must(t, err)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				_ = a.Write(AuditRecord{Time: time.Now(), RequestID: fmt.Sprintf("w%d-%d", w, i), Principal: "arn:p", Action: "GetSecretValue", Result: "Success"})
			}
		}()
	}
	wg.Wait()
	recs, err := ReadAuditFile(path, AuditFilter{})
	must(t, err)
	seen := map[string]int{}
	for _, r := range recs {
		seen[r.RequestID]++
	}
	if len(recs) != 1600 || len(seen) != 1600 {
		t.Errorf("read %d records (%d distinct), want each of the 1600 once", len(recs), len(seen))
	}
	_, files := auditBytes(t, path)
	if files < 10 {
		t.Errorf("%d files: rotation at 2 KiB did not run", files)
	}
	must(t, a.Close())

	// Retention: reopen with Keep 2 and write on: only the two newest rotated files stay.
	a, err = OpenAuditLog(path, AuditConfig{MaxBytes: 2 << 10, Keep: 2})
	must(t, err)
	for i := range 100 {
		must(t, a.Write(AuditRecord{Time: time.Now(), RequestID: fmt.Sprintf("late-%03d", i), Principal: "arn:p", Action: "GetSecretValue", Result: "Success"}))
	}
	must(t, a.Close())
	rotated, err := rotatedFiles(path)
	must(t, err)
	if len(rotated) != 2 {
		t.Errorf("%d rotated files kept, want 2", len(rotated))
	}
	recs, err = ReadAuditFile(path, AuditFilter{})
	must(t, err)
	if len(recs) == 0 || recs[len(recs)-1].RequestID != "late-099" {
		t.Fatalf("the newest record is lost: %d records", len(recs))
	}
	for i := 1; i < len(recs); i++ { // what is kept is the newest run, in order
		if recs[i].RequestID < recs[i-1].RequestID && strings.HasPrefix(recs[i-1].RequestID, "late-") {
			t.Errorf("records out of order at %d: %s after %s", i, recs[i].RequestID, recs[i-1].RequestID)
		}
	}
}

func TestTruncateKeepsUTF8(t *testing.T) {
	s := strings.Repeat("é", 300) // 600 bytes
	got := truncate(s, maxUserAgent)
	if len(got) > maxUserAgent || !strings.HasSuffix(got, "…[+344 bytes]") {
		t.Errorf("truncate = %q (%d bytes)", got, len(got))
	}
	if got := truncate("short", maxUserAgent); got != "short" {
		t.Errorf("truncate changed a short value: %q", got)
	}
}
