package secrets

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"
	"time"
)

// AuditRecord is one API call, like a CloudTrail event. It never holds a secret value.
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
}

// AuditLog appends records as JSON lines to a file with mode 0600.
type AuditLog struct {
	mu sync.Mutex
	f  *os.File
}

// OpenAuditLog opens (creating if needed) the audit log at path for appending.
func OpenAuditLog(path string) (*AuditLog, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	return &AuditLog{f: f}, nil
}

// Write appends one record as a single line.
func (a *AuditLog) Write(r AuditRecord) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode audit record: %w", err)
	}
	b = append(b, '\n')
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, err := a.f.Write(b); err != nil {
		return fmt.Errorf("write audit record: %w", err)
	}
	return nil
}

// Close closes the file.
func (a *AuditLog) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.f.Close()
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
	switch {
	case !f.Since.IsZero() && r.Time.Before(f.Since):
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

// ReadAuditFile reads the audit log at path (the state dir's audit.log); a missing
// file yields no records. It backs `haven secrets audit`.
func ReadAuditFile(path string, f AuditFilter) ([]AuditRecord, error) {
	fh, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	defer fh.Close()
	return ReadAudit(fh, f)
}
