// Package leakscan finds plaintext credentials in files, trees, git repositories and process memory views: known live secret values and credential patterns, the way gitleaks does.
package leakscan

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/haven-platform/haven/internal/proc"
)

// Finding is one plaintext credential. Match is masked: a finding never
// carries the secret itself.
type Finding struct {
	// Where is a file path, or e.g. "pid 123 (i-0abc) environ".
	Where string `json:"where"`
	// Line is the 1-based line number in a text file; 0 when unknown.
	Line int `json:"line,omitempty"`
	// Rule names what matched, e.g. "live-secret", "aws-access-key-id".
	Rule string `json:"rule"`
	// Match is the masked value, e.g. "hu*****(7)".
	Match string `json:"match"`
	// Secret names the live secret for rule live-secret, e.g. "courses/db AWSCURRENT".
	Secret string `json:"secret,omitempty"`
}

func (f Finding) String() string {
	loc := f.Where
	if f.Line > 0 {
		loc = fmt.Sprintf("%s:%d", f.Where, f.Line)
	}
	s := fmt.Sprintf("%s: %s %s", loc, f.Rule, f.Match)
	if f.Secret != "" {
		s += " (" + f.Secret + ")"
	}
	return s
}

// Literal is a live secret value to look for verbatim.
type Literal struct {
	// Name says which secret it is, e.g. "courses/db AWSPREVIOUS password".
	Name string
	// Value is the plaintext; values shorter than 8 bytes are ignored.
	Value string
}

// Rule is a credential pattern. The value is the regexp's first capture
// group, or the whole match when it has none.
type Rule struct {
	Name string
	Re   *regexp.Regexp
}

// AllowMarker on a line suppresses pattern findings on it (not live secrets).
const AllowMarker = "leakscan:allow"

// DefaultRules are the credential patterns, modelled on gitleaks' rules.
var DefaultRules = []Rule{
	// Long-term access key ids. Temporary ones (ASIA…) are logged by design
	// (CloudTrail logs them too) and are useless without their secret, which
	// the next rule catches.
	{"aws-access-key-id", regexp.MustCompile(`\b(AKIA[A-Z0-9]{16})\b`)},
	{"aws-secret-access-key", regexp.MustCompile(`(?i)(?:aws_?)?secret_?access_?key["']?\s*[:=]\s*["']?([A-Za-z0-9/+]{40})(?:[^A-Za-z0-9/+]|$)`)},
	{"aws-session-token", regexp.MustCompile(`(?i)(?:aws_?session_?token|"Token")["']?\s*[:=]\s*["']?([A-Za-z0-9/+=]{64,})`)},
	{"private-key", regexp.MustCompile(`-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----`)},
	{"postgres-url-password", regexp.MustCompile(`(?i)\bpostgres(?:ql)?://[^:/\s@"']+:([^@\s/"']+)@`)},
	// key=value (ini, DSN, env, shell): an unquoted or quoted literal.
	{"password-assignment", regexp.MustCompile(`(?i)\b(?:password|passwd|pgpassword|db_pass(?:word)?)["']?\s*=\s*("[^"\s]{6,}"|'[^'\s]{6,}'|[^\s"',;&{}<>()\[\]$]{6,})`)},
	// key: value (YAML, JSON): quoted, or unquoted to the end of the line.
	{"password-assignment", regexp.MustCompile(`(?im)\b(?:password|passwd|pgpassword|db_pass(?:word)?)["']?\s*:\s*("[^"\s]{6,}"|'[^'\s]{6,}'|[^\s"',;&{}<>()\[\]$#]{6,}[ \t]*$)`)},
}

// placeholder reports values that are obviously not credentials.
func placeholder(v string) bool {
	v = strings.Trim(strings.TrimSpace(v), `"'`)
	lv := strings.ToLower(v)
	for _, p := range []string{"redacted", "***", "${", "$(", "<", "%s", "%v", "%q", "xxxx", "example", "changeme", "placeholder", "secret_id", "password_file", "env:", "****"} {
		if strings.Contains(lv, p) {
			return true
		}
	}
	return strings.HasPrefix(v, "$") || codeExpr.MatchString(v)
}

// codeExpr matches program expressions such as c.Password or cfg.DB.Pass(),
// or newPassword(), which are assignments in code, not literal values.
var codeExpr = regexp.MustCompile(`^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$|^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*\(.*\)$`)

// Scanner looks for Literals and Rules.
type Scanner struct {
	Literals []Literal
	// Rules default to DefaultRules when nil.
	Rules []Rule
	// MaxFileSize skips larger files (reported in Skipped). Default 256 MiB.
	MaxFileSize int64
	// Skipped collects paths not scanned and why.
	Skipped []string
}

func (s *Scanner) rules() []Rule {
	if s.Rules == nil {
		return DefaultRules
	}
	return s.Rules
}

// Mask shows at most the first two characters of v and its length.
func Mask(v string) string {
	v = strings.Trim(v, `"'`)
	if len(v) <= 4 {
		return strings.Repeat("*", len(v)) + fmt.Sprintf("(%d)", len(v))
	}
	return v[:2] + strings.Repeat("*", 6) + fmt.Sprintf("(%d)", len(v))
}

// ScanBytes scans one blob; where names it in findings. Binary blobs (a NUL
// in the first 8 KiB) are searched for literals only, unless patterns is forced.
func (s *Scanner) ScanBytes(where string, data []byte) []Finding {
	return s.scan(where, data, !isBinary(data))
}

func isBinary(data []byte) bool {
	return bytes.IndexByte(data[:min(len(data), 8192)], 0) >= 0
}

func (s *Scanner) scan(where string, data []byte, patterns bool) []Finding {
	var out []Finding
	for _, l := range s.Literals {
		if len(l.Value) < 8 {
			continue
		}
		v := []byte(l.Value)
		for off := 0; ; {
			i := bytes.Index(data[off:], v)
			if i < 0 {
				break
			}
			pos := off + i
			line := 0
			if patterns {
				line = bytes.Count(data[:pos], []byte{'\n'}) + 1
			}
			out = append(out, Finding{Where: where, Line: line, Rule: "live-secret", Match: Mask(l.Value), Secret: l.Name})
			off = pos + len(v)
		}
	}
	if !patterns {
		return out
	}
	for _, r := range s.rules() {
		for _, m := range r.Re.FindAllSubmatchIndex(data, -1) {
			vs, ve := m[0], m[1]
			if len(m) >= 4 && m[2] >= 0 {
				vs, ve = m[2], m[3]
			}
			val := string(data[vs:ve])
			if r.Name != "private-key" && placeholder(val) {
				continue
			}
			if ve < len(data) && (data[ve] == '(' || data[ve] == '.') {
				continue // a call or selector in code, e.g. newPassword()
			}
			ls := bytes.LastIndexByte(data[:m[0]], '\n') + 1
			le := bytes.IndexByte(data[m[1]:], '\n')
			if le < 0 {
				le = len(data)
			} else {
				le += m[1]
			}
			if bytes.Contains(data[ls:le], []byte(AllowMarker)) {
				continue
			}
			match := Mask(val)
			if r.Name == "private-key" {
				match = "-----BEGIN … PRIVATE KEY-----"
			}
			out = append(out, Finding{Where: where, Line: bytes.Count(data[:m[0]], []byte{'\n'}) + 1, Rule: r.Name, Match: match})
		}
	}
	return out
}

// ScanFile scans one file. Files larger than MaxFileSize are skipped;
// binary files are searched for literals only.
func (s *Scanner) ScanFile(path string) ([]Finding, error) { return s.scanFile(path, true) }

func (s *Scanner) scanFile(path string, patterns bool) ([]Finding, error) {
	max := s.MaxFileSize
	if max == 0 {
		max = 256 << 20
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, nil
	}
	if st.Size() > max {
		s.Skipped = append(s.Skipped, path+": larger than "+fmt.Sprint(max)+" bytes")
		return nil, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("scan %s: %w", path, err)
	}
	return s.scan(path, data, patterns && !isBinary(data)), nil
}

// ScanTree scans every regular file under root. skip, if set, is asked for
// each path (relative to root, slash-separated); a true answer skips the file
// or the whole directory and is recorded with the reason in Skipped.
func (s *Scanner) ScanTree(ctx context.Context, root string, skip func(rel string) (bool, string)) ([]Finding, error) {
	var out []Finding
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // vanished while walking (temp files, sockets)
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		if skip != nil && rel != "." {
			if ok, why := skip(rel); ok {
				s.Skipped = append(s.Skipped, p+": "+why)
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
		}
		if d.IsDir() || !d.Type().IsRegular() {
			return nil
		}
		f, err := s.ScanFile(p)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		out = append(out, f...)
		return nil
	})
	return out, err
}

// ScanGit scans the files git tracks in repo (git ls-files). Test fixtures
// (paths with a testdata directory, and _test.go files) are searched for live
// secrets only, not for patterns: they hold deliberate fake credentials.
func (s *Scanner) ScanGit(ctx context.Context, repo string) ([]Finding, error) {
	cmd := exec.CommandContext(ctx, "git", "-C", repo, "ls-files", "-z")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	outb, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("git ls-files in %s: %w: %s", repo, err, strings.TrimSpace(stderr.String()))
	}
	var out []Finding
	for _, rel := range strings.Split(string(outb), "\x00") {
		if rel == "" {
			continue
		}
		fixture := slices.Contains(strings.Split(rel, "/"), "testdata") || strings.HasSuffix(rel, "_test.go")
		f, err := s.scanFile(filepath.Join(repo, rel), !fixture)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // deleted in the work tree
			}
			return nil, err
		}
		out = append(out, f...)
	}
	return out, nil
}

// ScanProcess scans a process's environment and command line
// (/proc/<pid>/environ and cmdline); label names it in findings.
func (s *Scanner) ScanProcess(pid int, label string) ([]Finding, error) {
	var out []Finding
	for _, part := range []string{"environ", "cmdline"} {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, part))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return out, nil // exited
			}
			return out, fmt.Errorf("read /proc/%d/%s: %w", pid, part, err)
		}
		// One entry per line, so line numbers name the variable or argument.
		text := bytes.ReplaceAll(data, []byte{0}, []byte{'\n'})
		out = append(out, s.scan(fmt.Sprintf("pid %d (%s) %s", pid, label, part), text, true)...)
	}
	return out, nil
}

// ProcessGroup returns the live processes whose process group is pgid.
func ProcessGroup(pgid int) []int {
	var out []int
	for _, pid := range proc.Group(pgid) {
		if proc.Alive(pid) {
			out = append(out, pid)
		}
	}
	sort.Ints(out)
	return out
}
