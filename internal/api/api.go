// Package api is the daemon's local HTTP API: the wire types and a typed client the CLI uses.
package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// SocketName is the API's unix socket inside the state directory.
const SocketName = "haven.sock"

// Phases of a region's life.
const (
	PhaseStarting = "starting"
	PhaseReady    = "ready"
	PhaseStopping = "stopping"
	PhaseFailed   = "failed"
)

// Status is the whole region at a glance: `haven status --json` prints it.
type Status struct {
	Region    string     `json:"region"`
	Phase     string     `json:"phase"`
	Error     string     `json:"error,omitempty"`
	StartedAt time.Time  `json:"started_at"`
	StateDir  string     `json:"state_dir"`
	PID       int        `json:"pid"`
	Progress  []string   `json:"progress,omitempty"`
	Endpoints Endpoints  `json:"endpoints"`
	Zones     []Zone     `json:"zones"`
	Fleet     Fleet      `json:"fleet"`
	LB        LB         `json:"load_balancer"`
	Instances []Instance `json:"instances"`
	Database  *Database  `json:"database,omitempty"`
	Warnings  []string   `json:"warnings,omitempty"`
}

// Endpoints are the addresses a user or app reaches the region at.
type Endpoints struct {
	HTTPS    string `json:"https"`
	HTTP     string `json:"http,omitempty"`
	CACert   string `json:"ca_cert"`
	Database string `json:"database"`
	Secrets  string `json:"secrets,omitempty"`
}

// Zone is one availability zone and the address range it owns.
type Zone struct {
	Name string `json:"name"`
	AZ   string `json:"az"`
	CIDR string `json:"cidr"`
}

// Fleet is the Auto Scaling Group's capacity.
type Fleet struct {
	Min             int    `json:"min"`
	Desired         int    `json:"desired"`
	Max             int    `json:"max"`
	InService       int    `json:"in_service"`
	Healthy         int    `json:"healthy"`
	HealthCheckType string `json:"health_check_type"`
}

// LB is the load balancer's target group settings and counters.
type LB struct {
	Algorithm          string `json:"algorithm"`
	HealthCheckPath    string `json:"health_check_path"`
	IntervalMS         int64  `json:"health_check_interval_ms"`
	TimeoutMS          int64  `json:"health_check_timeout_ms"`
	HealthyThreshold   int    `json:"healthy_threshold"`
	UnhealthyThreshold int    `json:"unhealthy_threshold"`
	Requests           int64  `json:"requests"`
	Retries            int64  `json:"retries"`
	Ejections          int64  `json:"ejections"`
	Errors5xx          int64  `json:"errors_5xx"`
}

// Instance is one app instance and its load balancer target state.
type Instance struct {
	ID         string    `json:"id"`
	Zone       string    `json:"zone"`
	AZ         string    `json:"az"`
	Address    string    `json:"address"`
	PID        int       `json:"pid"`
	State      string    `json:"state"`
	Health     string    `json:"health"`
	InFlight   int       `json:"in_flight"`
	LaunchedAt time.Time `json:"launched_at"`
}

// Database is the database tier's view.
type Database struct {
	Endpoint string   `json:"endpoint"`
	Epoch    int64    `json:"epoch"`
	Primary  string   `json:"primary"`
	Nodes    []DBNode `json:"nodes"`
}

// DBNode is one PostgreSQL server.
type DBNode struct {
	Name    string `json:"name"`
	Zone    string `json:"zone"`
	Address string `json:"address"`
	Role    string `json:"role"`
	State   string `json:"state"`
	PID     int    `json:"pid,omitempty"`
}

// SignalRequest asks the daemon to send a signal to an instance (a drill's failpoint).
type SignalRequest struct {
	Signal string `json:"signal"` // KILL, STOP, CONT or TERM
}

// CapacityRequest sets the fleet's capacity; nil fields are left as they are.
type CapacityRequest struct {
	Min     *int `json:"min,omitempty"`
	Desired *int `json:"desired,omitempty"`
	Max     *int `json:"max,omitempty"`
}

// Event is one entry of the region's event log.
type Event struct {
	Seq       int64     `json:"seq"`
	Time      time.Time `json:"time"`
	Component string    `json:"component"`
	Kind      string    `json:"kind"`
	Subject   string    `json:"subject,omitempty"`
	Message   string    `json:"message"`
}

// Error is the API's error body.
type Error struct {
	Message string `json:"error"`
	Status  int    `json:"-"`
}

func (e *Error) Error() string { return e.Message }

// ErrNotRunning means no daemon answers on the state directory's socket.
var ErrNotRunning = errors.New("no region is running in this state directory")

// Client is the typed client of the daemon's API.
type Client struct {
	StateDir string
	hc       *http.Client
}

// NewClient returns a client for the daemon of stateDir.
func NewClient(stateDir string) *Client {
	sock := filepath.Join(stateDir, SocketName)
	return &Client{StateDir: stateDir, hc: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}}
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://haven"+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) || errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%w (%s); start one with `haven up`", ErrNotRunning, c.StateDir)
		}
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		e := &Error{Status: resp.StatusCode}
		if json.Unmarshal(data, e) != nil || e.Message == "" {
			e.Message = fmt.Sprintf("daemon answered %s", resp.Status)
		}
		return e
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

// Status returns the region's status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var s Status
	err := c.do(ctx, http.MethodGet, "/v1/status", nil, &s)
	return s, err
}

// Shutdown asks the daemon to stop the region and exit.
func (c *Client) Shutdown(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/v1/shutdown", nil, nil)
}

// SignalInstance sends a signal to an instance's processes.
func (c *Client) SignalInstance(ctx context.Context, id, sig string) error {
	return c.do(ctx, http.MethodPost, "/v1/instances/"+id+"/signal", SignalRequest{Signal: sig}, nil)
}

// SetCapacity changes the fleet's capacity.
func (c *Client) SetCapacity(ctx context.Context, r CapacityRequest) error {
	return c.do(ctx, http.MethodPost, "/v1/fleet/capacity", r, nil)
}

// Events returns the events after seq.
func (c *Client) Events(ctx context.Context, after int64) ([]Event, error) {
	var ev []Event
	err := c.do(ctx, http.MethodGet, fmt.Sprintf("/v1/events?after=%d", after), nil, &ev)
	return ev, err
}

// Do calls any endpoint; later subsystems use it for their own routes.
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	return c.do(ctx, method, path, in, out)
}
