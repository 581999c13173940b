package lb

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"time"
)

// Settings are the part of Config a load balancer process is started
// with (see ProcessSpec): everything but the TLS material, the access log,
// the dialer, the logger and the clock, which cannot cross a process
// boundary as values.
type Settings struct {
	Name                string        `json:"name"`
	HTTPSAddr           string        `json:"https_addr"`
	HTTPAddr            string        `json:"http_addr,omitempty"`
	HealthCheck         HealthCheck   `json:"health_check"`
	Algorithm           string        `json:"algorithm"`
	DeregistrationDelay time.Duration `json:"deregistration_delay"`
	SlowStart           time.Duration `json:"slow_start"`
	IdleTimeout         time.Duration `json:"idle_timeout"`
	RetryBudget         time.Duration `json:"retry_budget"`
}

// SettingsOf returns the settings of c, defaults applied.
func SettingsOf(c Config) Settings {
	c = c.withDefaults()
	return Settings{
		Name: c.Name, HTTPSAddr: c.HTTPSAddr, HTTPAddr: c.HTTPAddr, HealthCheck: c.HealthCheck,
		Algorithm: c.Algorithm, DeregistrationDelay: c.DeregistrationDelay, SlowStart: c.SlowStart,
		IdleTimeout: c.IdleTimeout, RetryBudget: c.RetryBudget,
	}
}

// Config returns the Config these settings describe (without TLS, access
// log, dialer, logger and clock).
func (s Settings) Config() Config {
	return Config{
		Name: s.Name, HTTPSAddr: s.HTTPSAddr, HTTPAddr: s.HTTPAddr, HealthCheck: s.HealthCheck,
		Algorithm: s.Algorithm, DeregistrationDelay: s.DeregistrationDelay, SlowStart: s.SlowStart,
		IdleTimeout: s.IdleTimeout, RetryBudget: s.RetryBudget,
	}
}

// withTargetGroup returns s with the target group settings of t (those
// SetTargetGroup changes in place: health check, algorithm, deregistration
// delay, slow start, idle timeout), defaults applied.
func (s Settings) withTargetGroup(t Settings) Settings {
	c := t.Config().withDefaults()
	s.HealthCheck, s.Algorithm, s.DeregistrationDelay, s.SlowStart, s.IdleTimeout = c.HealthCheck, c.Algorithm, c.DeregistrationDelay, c.SlowStart, c.IdleTimeout
	return s
}

// Digest identifies the settings: two processes with the same digest
// balance alike. A daemon that finds a process with another digest (the
// spec changed) hands over to a new process (Process.Restart).
func (s Settings) Digest() string {
	b, _ := json.Marshal(s)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// ProcessSpec is what a load balancer process (`haven lb serve`) is
// started with, on a pipe it inherits (never in argv, the environment or a
// file: it carries the TLS private key).
type ProcessSpec struct {
	Settings Settings `json:"settings"`
	// CertPEM and KeyPEM are the HTTPS listener's certificate chain and
	// private key.
	CertPEM []byte `json:"cert_pem"`
	KeyPEM  []byte `json:"key_pem"`
	// AccessLog is the access log file, appended to. Default "": none.
	AccessLog string `json:"access_log,omitempty"`
	// Targets are restored in their state (Restore): the previous
	// process's, in a hot restart or a restart after a crash.
	Targets []TargetStatus `json:"targets,omitempty"`
	// Listeners name the listening sockets the process inherits, in
	// order from descriptor 4: "https" and, when set, "http". Those it does
	// not inherit it binds itself, at the settings' addresses.
	Listeners []string `json:"listeners,omitempty"`
}

// ProcessState is what a load balancer process reports on its control
// socket (GET /v1/state).
type ProcessState struct {
	PID       int       `json:"pid"`
	Version   string    `json:"version"`
	Exe       string    `json:"exe"`
	StartedAt time.Time `json:"started_at"`
	// Ready is true once it serves; Draining once it hands over (Drain).
	Ready     bool   `json:"ready"`
	Draining  bool   `json:"draining"`
	Digest    string `json:"digest"`
	HTTPSAddr string `json:"https_addr"`
	HTTPAddr  string `json:"http_addr,omitempty"`
	// Conns is the number of client connections open.
	Conns   int64          `json:"conns"`
	Targets []TargetStatus `json:"targets"`
	Stats   Stats          `json:"stats"`
}

// watchEvent is one line of GET /v1/watch: the first is a snapshot of
// every target, then one line per change.
type watchEvent struct {
	// Kind is "snapshot" (Snapshot holds every target) or "target" (Target
	// changed).
	Kind     string         `json:"kind"`
	Snapshot []TargetStatus `json:"snapshot,omitempty"`
	Target   *TargetStatus  `json:"target,omitempty"`
}
