package secrets

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/haven-platform/haven/internal/clock"
)

// AuditRecord is one API call, like a CloudTrail event. It never holds a secret value.
// Fields a caller chooses (SecretARN from its SecretId, VersionID, UserAgent)
// are stored at most maxAuditField bytes long (maxUserAgent for UserAgent).
type AuditRecord struct {
	Time        time.Time `json:"time"`
	RequestID   string    `json:"requestId"`
	Principal   string    `json:"principal,omitempty"` // assumed-role ARN
	AccessKeyID string    `json:"accessKeyId,omitempty"`
	Role        string    `json:"role,omitempty"`
	Instance    string    `json:"instance,omitempty"`
	Action      string    `json:"action"` // e.g. "GetSecretValue"
	SecretARN   string    `json:"secretArn,omitempty"`
	VersionID   string    `json:"versionId,omitempty"`
	Result      string    `json:"result"` // "Success" or the error code
	SourceIP    string    `json:"sourceIp,omitempty"`
	UserAgent   string    `json:"userAgent,omitempty"`
	// Count, when above 1, says this record stands for Count unauthenticated
	// failures with this Result from SourceIP between Time and Until (the
	// action and user agent are the last one's): see AuditConfig.Window.
	Count int `json:"count,omitempty"`
	// Until is the time of the last failure an aggregated record counts.
	Until time.Time `json:"until,omitzero"`
}

// Bounds on what a caller can make the audit log store.
const (
	maxUserAgent  = 256
	maxAuditField = 512
	// maxTrackedSources bounds the (source, result) pairs whose
	// unauthenticated failures are counted apart; beyond it new sources
	// share the source "(other)".
	maxTrackedSources = 4096
)

// Defaults of AuditConfig.
const (
	DefaultAuditWindow   = time.Minute
	DefaultAuditMaxBytes = 16 << 20
	DefaultAuditKeep     = 8
)

// AuditConfig bounds the audit log.
type AuditConfig struct {
	// Window is how long unauthenticated failures (no valid signature: the
	// caller chose every field) from one source with one result code are
	// aggregated: the first of a window is written at once, the others become
	// one record with a Count when the window ends. Default
	// DefaultAuditWindow (1m).
	Window time.Duration
	// MaxBytes is the size at which audit.log is rotated to
	// audit.log.<seq>. Default DefaultAuditMaxBytes (16 MiB).
	MaxBytes int64
	// Keep is how many rotated files are kept; older ones are deleted.
	// Default DefaultAuditKeep (8): at most (Keep+1)·MaxBytes on disk.
	Keep int
	// Clock times windows. Default the wall clock.
	Clock clock.Clock
}

func (c *AuditConfig) setDefaults() {
	if c.Window <= 0 {
		c.Window = DefaultAuditWindow
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = DefaultAuditMaxBytes
	}
	if c.Keep <= 0 {
		c.Keep = DefaultAuditKeep
	}
	c.Clock = clock.Or(c.Clock)
}

// AuditLog appends records as JSON lines to a file with mode 0600, rotates
// it by size and aggregates unauthenticated failures per source.
//
// Rotation renames audit.log to audit.log.<seq> (seq grows by one each time)
// and opens a new audit.log, under the log's lock: a record is in exactly
// one file, so nothing is lost but what retention (Keep) deletes on purpose.
type AuditLog struct {
	cfg  AuditConfig
	path string

	mu      sync.Mutex
	f       *os.File
	size    int64
	pending map[string]*failures // unauthenticated failures by source and result, this window
}

// failures counts one source's unauthenticated failures with one result
// code in a window.
type failures struct {
	start time.Time   // the window's first failure (written at once)
	rest  AuditRecord // the others: the last one, with Count and Until
}

// OpenAuditLog opens (creating if needed) the audit log at path for appending.
func OpenAuditLog(path string, cfg ...AuditConfig) (*AuditLog, error) {
	var c AuditConfig
	if len(cfg) > 0 {
		c = cfg[0]
	}
	c.setDefaults()
	a := &AuditLog{cfg: c, path: path, pending: map[string]*failures{}}
	if err := a.open(); err != nil {
		return nil, err
	}
	return a, nil
}

func (a *AuditLog) open() error {
	f, err := os.OpenFile(a.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("open audit log: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("open audit log: %w", err)
	}
	a.f, a.size = f, st.Size()
	return nil
}

// Write records one call. An authenticated call (a Principal) or the first
// unauthenticated failure of a source and result code in a window is
// appended at once; the next ones in the window are counted and written as
// one record when the window ends.
func (a *AuditLog) Write(r AuditRecord) error {
	r = bounded(r)
	a.mu.Lock()
	defer a.mu.Unlock()
	errs := []error{a.flushLocked(false)}
	if r.Principal == "" && r.Result != "Success" {
		src := r.SourceIP
		key := src + " " + r.Result
		p, ok := a.pending[key]
		if !ok && len(a.pending) >= maxTrackedSources {
			src = "(other)"
			key = src + " " + r.Result
			p, ok = a.pending[key]
		}
		if ok {
			count, first := p.rest.Count+1, p.rest.Time
			if count == 1 {
				first = r.Time
			}
			p.rest = r
			p.rest.Time, p.rest.Until, p.rest.Count = first, r.Time, count
			p.rest.SourceIP, p.rest.RequestID = src, ""
			return errors.Join(errs...)
		}
		a.pending[key] = &failures{start: r.Time}
	}
	errs = append(errs, a.appendLocked(r))
	return errors.Join(errs...)
}

// Flush writes the aggregated records of every window that has ended.
func (a *AuditLog) Flush() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.flushLocked(false)
}

// flushLocked writes the aggregated records of ended windows (all of them
// when all is set) and forgets those windows.
func (a *AuditLog) flushLocked(all bool) error {
	now := a.cfg.Clock.Now()
	var out []AuditRecord
	for key, p := range a.pending {
		if all || now.Sub(p.start) >= a.cfg.Window {
			if p.rest.Count > 0 {
				out = append(out, p.rest)
			}
			delete(a.pending, key)
		}
	}
	slices.SortFunc(out, func(x, y AuditRecord) int { return x.Time.Compare(y.Time) })
	var errs []error
	for _, r := range out {
		errs = append(errs, a.appendLocked(r))
	}
	return errors.Join(errs...)
}

func (a *AuditLog) appendLocked(r AuditRecord) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode audit record: %w", err)
	}
	b = append(b, '\n')
	if a.size > 0 && a.size+int64(len(b)) > a.cfg.MaxBytes {
		if err := a.rotateLocked(); err != nil {
			return err
		}
	}
	n, err := a.f.Write(b)
	a.size += int64(n)
	if err != nil {
		return fmt.Errorf("write audit record: %w", err)
	}
	return nil
}

// rotateLocked renames the current file to the next audit.log.<seq>,
// opens a new one and deletes rotated files beyond Keep.
func (a *AuditLog) rotateLocked() error {
	rotated, err := rotatedFiles(a.path)
	if err != nil {
		return err
	}
	next := 1
	if len(rotated) > 0 {
		next = rotated[len(rotated)-1].seq + 1
	}
	if err := a.f.Sync(); err != nil {
		return fmt.Errorf("rotate audit log: %w", err)
	}
	dst := fmt.Sprintf("%s.%06d", a.path, next)
	if err := os.Rename(a.path, dst); err != nil {
		return fmt.Errorf("rotate audit log: %w", err)
	}
	old := a.f
	if err := a.open(); err != nil {
		// Keep appending to the renamed file rather than lose records.
		a.f = old
		return err
	}
	old.Close()
	rotated = append(rotated, rotatedFile{dst, next})
	for len(rotated) > a.cfg.Keep {
		if err := os.Remove(rotated[0].path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("apply audit log retention: %w", err)
		}
		rotated = rotated[1:]
	}
	return nil
}

// Close writes every pending aggregated record and closes the file.
func (a *AuditLog) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	err := a.flushLocked(true)
	return errors.Join(err, a.f.Close())
}

// bounded cuts the fields a caller chooses to their bounds.
func bounded(r AuditRecord) AuditRecord {
	r.UserAgent = truncate(r.UserAgent, maxUserAgent)
	r.SecretARN = truncate(r.SecretARN, maxAuditField)
	r.VersionID = truncate(r.VersionID, maxAuditField)
	r.Action = truncate(r.Action, maxAuditField)
	return r
}

// truncate cuts s to at most max bytes on a rune boundary, saying how much
// was cut.
func truncate(s string, max int) string {
	if len(s) <= max {
		return s
	}
	suffix := fmt.Sprintf("…[+%d bytes]", len(s)-max)
	cut := max - len(suffix)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + suffix
}

// AuditFilter selects records; zero fields match everything.
type AuditFilter struct {
	// Since keeps records at or after this time.
	Since time.Time
	// SecretARN keeps records of this secret (a name matches the ARN's name part prefix).
	SecretARN string
	// Action keeps records of this action, e.g. "GetSecretValue".
	Action string
	// Principal keeps records whose role or instance equals it.
	Principal string
	// FailedOnly keeps only refused or failed calls.
	FailedOnly bool
}

func (f AuditFilter) match(r AuditRecord) bool {
	last := r.Time
	if r.Until.After(last) {
		last = r.Until
	}
	switch {
	case !f.Since.IsZero() && last.Before(f.Since):
		return false
	case f.SecretARN != "" && r.SecretARN != f.SecretARN:
		return false
	case f.Action != "" && r.Action != f.Action:
		return false
	case f.Principal != "" && r.Role != f.Principal && r.Instance != f.Principal:
		return false
	case f.FailedOnly && r.Result == "Success":
		return false
	}
	return true
}

// ReadAudit reads JSON-line audit records from r, keeping those that match f.
// A torn last line (a crash mid-append) is skipped.
func ReadAudit(r io.Reader, f AuditFilter) ([]AuditRecord, error) {
	var out []AuditRecord
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 {
			continue
		}
		var rec AuditRecord
		if err := json.Unmarshal(line, &rec); err != nil {
			continue
		}
		if f.match(rec) {
			out = append(out, rec)
		}
	}
	if err := sc.Err(); err != nil {
		return out, fmt.Errorf("read audit log: %w", err)
	}
	return out, nil
}

// ReadAuditFile reads the audit log at path (the state dir's audit.log) and
// the rotated files beside it, oldest first; a missing file yields no
// records. It backs `haven secrets audit`.
func ReadAuditFile(path string, f AuditFilter) ([]AuditRecord, error) {
	rotated, err := rotatedFiles(path)
	if err != nil {
		return nil, err
	}
	var out []AuditRecord
	for _, p := range append(rotated, rotatedFile{path: path}) {
		recs, err := readOne(p.path, f)
		if err != nil {
			return out, err
		}
		out = append(out, recs...)
	}
	return out, nil
}

func readOne(path string, f AuditFilter) ([]AuditRecord, error) {
	fh, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) { // rotated away meanwhile, or never written
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	defer fh.Close()
	return ReadAudit(fh, f)
}

type rotatedFile struct {
	path string
	seq  int
}

// rotatedFiles lists path.<seq> files, oldest (lowest seq) first.
func rotatedFiles(path string) ([]rotatedFile, error) {
	entries, err := os.ReadDir(filepath.Dir(path))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list audit logs: %w", err)
	}
	prefix := filepath.Base(path) + "."
	var out []rotatedFile
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), prefix)
		if !ok || e.IsDir() {
			continue
		}
		if seq, err := strconv.Atoi(rest); err == nil && seq > 0 {
			out = append(out, rotatedFile{filepath.Join(filepath.Dir(path), e.Name()), seq})
		}
	}
	slices.SortFunc(out, func(x, y rotatedFile) int { return x.seq - y.seq })
	return out, nil
}
