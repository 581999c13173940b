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
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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
	// PhaseHandingOver: another daemon takes over the region (an upgrade);
	// this one exits, leaving the data plane running.
	PhaseHandingOver = "handing-over"
)

// Status is the whole region at a glance: `haven status --json` prints it.
type Status struct {
	Region    string    `json:"region"`
	Phase     string    `json:"phase"`
	Error     string    `json:"error,omitempty"`
	StartedAt time.Time `json:"started_at"`
	// ReadyAt is when the region became ready (zero until then).
	ReadyAt  time.Time `json:"ready_at,omitzero"`
	StateDir string    `json:"state_dir"`
	// SpecSHA256 is the hex SHA-256 of the spec file's text the region
	// runs: the file it started with, or the last one applied.
	SpecSHA256 string `json:"spec_sha256,omitempty"`
	PID        int    `json:"pid"`
	// Version is the daemon's build.
	Version   string     `json:"version"`
	Progress  []string   `json:"progress,omitempty"`
	Endpoints Endpoints  `json:"endpoints"`
	Network   Network    `json:"network"`
	Zones     []Zone     `json:"zones"`
	Fleet     Fleet      `json:"fleet"`
	LB        LB         `json:"load_balancer"`
	Instances []Instance `json:"instances"`
	Database  *Database  `json:"database,omitempty"`
	// ObjStore and Edge are nil while their tier is not running (the edge
	// also when edge.listen is empty).
	ObjStore *ObjStoreStatus `json:"objstore,omitempty"`
	Edge     *EdgeStatus     `json:"edge,omitempty"`
	// Identity is the identity tier (nil: identity.enabled is false, or
	// the provider is not running yet).
	Identity *Identity `json:"identity,omitempty"`
	// Spec is the recorded spec's hash and its last apply.
	Spec SpecState `json:"spec"`
	// Adoption is what this daemon found running when it started on a
	// state dir an earlier daemon left (a crash, an upgrade); nil on a
	// fresh start.
	Adoption *Adoption `json:"adoption,omitempty"`
	Warnings []string  `json:"warnings,omitempty"`
}

// Adoption is what a daemon took over from an earlier one instead of
// relaunching it, and what it could not.
type Adoption struct {
	// VPC is true when the VPC was adopted as it ran (namespaces, rules).
	VPC bool `json:"vpc"`
	// Instances are the instances adopted: same ids, same processes.
	Instances []string `json:"instances,omitempty"`
	// DBNodes maps each database node adopted to its postmaster's pid.
	DBNodes map[string]int `json:"db_nodes,omitempty"`
	// Endpoint is true when the database endpoint's rules were adopted as
	// they were (no connection cut); EndpointProxy is the pid of the
	// endpoint's proxy process adopted (0: started anew).
	Endpoint      bool `json:"endpoint"`
	EndpointProxy int  `json:"endpoint_proxy,omitempty"`
	// LB is the pid of the load balancer process adopted (0: started
	// anew); LBReplaced is set when it was then replaced by a hot restart
	// (another version or settings), with why.
	LB            int    `json:"lb,omitempty"`
	LBReplaced    int    `json:"lb_replaced,omitempty"`
	LBReplacedWhy string `json:"lb_replaced_why,omitempty"`
	// Relaunched are recorded instances that were gone (their process had
	// exited): the fleet replaces them.
	Relaunched []string `json:"relaunched,omitempty"`
	// LeftAlone lists records whose pid now runs another program, with
	// why: nothing of it was touched.
	LeftAlone []string `json:"left_alone,omitempty"`
	// Failed lists processes that still ran but could not be taken over,
	// with why: they were stopped and replaced.
	Failed []string `json:"failed,omitempty"`
	// ReleaseSkipped is true when app.release did not run again because
	// the database was adopted.
	ReleaseSkipped bool `json:"release_skipped,omitempty"`
}

// Endpoints are the addresses a user or app reaches the region at.
type Endpoints struct {
	HTTPS    string `json:"https"`
	HTTP     string `json:"http,omitempty"`
	CACert   string `json:"ca_cert"`
	Database string `json:"database"`
	Secrets  string `json:"secrets,omitempty"`
	// S3 is the object store's endpoint; Edge the edge's URL.
	S3   string `json:"s3,omitempty"`
	Edge string `json:"edge,omitempty"`
}

// Network is how the region's zones are separated.
type Network struct {
	// Mode is "vpc" (a network namespace per instance and database node,
	// security groups enforced by nftables) or "loopback" (the fallback
	// without root or namespaces: nothing is enforced).
	Mode string `json:"mode"`
	// Range is the VPC's range of 198.18.0.0/15 (vpc).
	Range string `json:"range,omitempty"`
	// Prefix names everything the VPC has on the host: namespaces
	// PREFIX-*, host link PREFIX-h (vpc).
	Prefix string `json:"prefix,omitempty"`
	// HostAddr is the host's address on its link into the VPC (vpc).
	HostAddr string `json:"host_addr,omitempty"`
	// DBEndpoint is the database endpoint's address inside the VPC (vpc).
	DBEndpoint string `json:"db_endpoint,omitempty"`
	// SecurityGroups are the enforced groups (vpc).
	SecurityGroups []string `json:"security_groups,omitempty"`
	// Why says why there is no VPC (loopback).
	Why string `json:"why,omitempty"`
}

// Zone is one availability zone and the address range it owns.
type Zone struct {
	Name string `json:"name"`
	AZ   string `json:"az"`
	// CIDR is the range instances take their addresses from: the app
	// subnet in a VPC, the zone's loopback /24 otherwise.
	CIDR string `json:"cidr"`
	// Subnets are the zone's subnets by tier (public, app, db) in a VPC.
	Subnets map[string]string `json:"subnets,omitempty"`
	// Fault is the zone's injected fault ("power off", "partition",
	// "degrade 10% loss"), "" when healthy.
	Fault string `json:"fault,omitempty"`
	// Impaired is true while the fleet launches nothing into the zone.
	Impaired bool `json:"impaired,omitempty"`
}

// Fleet is the Auto Scaling Group's capacity.
type Fleet struct {
	Min             int    `json:"min"`
	Desired         int    `json:"desired"`
	Max             int    `json:"max"`
	InService       int    `json:"in_service"`
	Healthy         int    `json:"healthy"`
	HealthCheckType string `json:"health_check_type"`
	// Pending counts instances launched and not yet in service.
	Pending int `json:"pending"`
	// AvgCPU is the in-service instances' average CPU utilisation over the
	// scaler's last one-second sample, in percent of their quota (absent
	// when unknown: no CPU accounting, or no sample yet).
	AvgCPU *float64 `json:"avg_cpu,omitempty"`
	// Scaling says whether scaling acts: "on", "suspended" or "off" (no
	// policy and no scheduled action in the spec).
	Scaling string `json:"scaling,omitempty"`
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
	// PID is the load balancer process serving now, Version its build.
	PID     int    `json:"pid,omitempty"`
	Version string `json:"version,omitempty"`
}

// Instance is one app instance and its load balancer target state.
type Instance struct {
	ID      string `json:"id"`
	Zone    string `json:"zone"`
	AZ      string `json:"az"`
	Address string `json:"address"`
	// Subnet is the zone's range the address is in.
	Subnet   string `json:"subnet"`
	PID      int    `json:"pid"`
	State    string `json:"state"`
	Health   string `json:"health"`
	InFlight int    `json:"in_flight"`
	// Target is the load balancer's view of the instance: initial, healthy,
	// unhealthy, draining, or "" when it is not registered.
	Target     string    `json:"target"`
	LaunchedAt time.Time `json:"launched_at"`
	// InServiceSince is when it entered service (absent while pending).
	InServiceSince time.Time `json:"in_service_since,omitzero"`
	// CPU is its CPU utilisation over the last second, in percent of its
	// quota, and RPS the requests routed to it per second (absent when
	// unknown).
	CPU *float64 `json:"cpu,omitempty"`
	RPS *float64 `json:"rps,omitempty"`
	// Warming is true while it is within the instance warmup: it counts
	// toward capacity, not toward the scaler's metrics.
	Warming bool `json:"warming,omitempty"`
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
	// Attrs are the event's facts, e.g. a failover's epoch, old_primary,
	// new_primary and rto_ms.
	Attrs map[string]any `json:"attrs,omitempty"`
}

// EventQuery selects events (GET /v1/events); zero fields match everything.
type EventQuery struct {
	// After keeps events with a sequence number above it (for --follow).
	After int64
	// Since keeps events at or after this time.
	Since time.Time
	// Component keeps events of this component (db, fleet, lb, secrets, ...).
	Component string
}

// Values encodes q as query parameters.
func (q EventQuery) Values() url.Values {
	v := url.Values{}
	if q.After > 0 {
		v.Set("after", strconv.FormatInt(q.After, 10))
	}
	if !q.Since.IsZero() {
		v.Set("since", q.Since.UTC().Format(time.RFC3339Nano))
	}
	if q.Component != "" {
		v.Set("component", q.Component)
	}
	return v
}

// ParseEventQuery decodes the route's query parameters.
func ParseEventQuery(v url.Values) (EventQuery, error) {
	q := EventQuery{Component: v.Get("component")}
	if s := v.Get("after"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return q, fmt.Errorf("after: must be a sequence number, got %q", s)
		}
		q.After = n
	}
	if s := v.Get("since"); s != "" {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return q, fmt.Errorf("since: must be an RFC 3339 time such as 2026-01-02T15:04:05Z, got %q", s)
		}
		q.Since = t
	}
	return q, nil
}

// Match reports whether e is selected by q.
func (q EventQuery) Match(e Event) bool {
	return e.Seq > q.After && (q.Since.IsZero() || !e.Time.Before(q.Since)) && (q.Component == "" || e.Component == q.Component)
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
		if errors.Is(err, os.ErrPermission) {
			return fmt.Errorf("reach the daemon of %s: %w: its socket is the operator's (the user running haven) alone", c.StateDir, os.ErrPermission)
		}
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

// Handover asks the daemon to hand the region over to another daemon
// (POST /v1/handover): it stops its control loops and exits, leaving the
// instances, the database, the load balancer and the network running.
func (c *Client) Handover(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/v1/handover", nil, nil)
}

// Shutdown asks the daemon to stop the region and exit.
func (c *Client) Shutdown(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/v1/shutdown", nil, nil)
}

// FaultRequest injects one of the failpoint catalogue's external
// scenarios (POST /v1/faults): the one way drills inject faults.
type FaultRequest struct {
	// Scenario is a name from the catalogue, e.g. db-kill or instance-freeze
	// (`haven faults` lists them).
	Scenario string `json:"scenario"`
	// Target is the instance id (instance-*), the database node (db-*;
	// default the primary, the standby for db-standby-loss) or the zone
	// (zone-*: a zone name, or "primary" for the database primary's zone).
	Target string `json:"target,omitempty"`
	// LossPercent, for zone-degrade: the chance (1-99) that each packet on
	// the zone's links is dropped. Default 10.
	LossPercent int `json:"loss_percent,omitempty"`
	// DelayMS, for db-controller-restart: the primary is killed, and the
	// controller restarted this long after (0: at once), to land mid-failover.
	DelayMS int `json:"delay_ms,omitempty"`
}

// FaultResult says what was done and when.
type FaultResult struct {
	Scenario string    `json:"scenario"`
	Target   string    `json:"target"`
	Zone     string    `json:"zone,omitempty"`
	PID      int       `json:"pid,omitempty"`
	At       time.Time `json:"at"`
	// Epoch is the database's epoch before the fault (db-*).
	Epoch int64 `json:"epoch,omitempty"`
	// RestartedAt and RestartEpoch (db-controller-restart): when the new
	// controller started and the persisted epoch it started from.
	RestartedAt  time.Time `json:"restarted_at,omitempty"`
	RestartEpoch int64     `json:"restart_epoch,omitempty"`
	// Killed (zone-power) are the instances and database nodes whose
	// processes were SIGKILLed.
	Killed []string `json:"killed,omitempty"`
}

// Fault injects a named fault.
func (c *Client) Fault(ctx context.Context, r FaultRequest) (FaultResult, error) {
	var out FaultResult
	err := c.do(ctx, http.MethodPost, "/v1/faults", r, &out)
	return out, err
}

// instanceFaults maps signal names to the instance scenarios.
var instanceFaults = map[string]string{"KILL": "instance-kill", "STOP": "instance-freeze", "CONT": "instance-thaw", "TERM": "instance-term"}

// SignalInstance sends KILL, STOP, CONT or TERM to an instance's processes
// (the instance-* fault scenarios).
func (c *Client) SignalInstance(ctx context.Context, id, sig string) error {
	name, ok := instanceFaults[strings.TrimPrefix(strings.ToUpper(sig), "SIG")]
	if !ok {
		return fmt.Errorf("signal %q: must be one of KILL, STOP, CONT, TERM", sig)
	}
	_, err := c.Fault(ctx, FaultRequest{Scenario: name, Target: id})
	return err
}

// SetCapacity changes the fleet's capacity.
func (c *Client) SetCapacity(ctx context.Context, r CapacityRequest) error {
	return c.do(ctx, http.MethodPost, "/v1/fleet/capacity", r, nil)
}

// Events returns the events q selects.
func (c *Client) Events(ctx context.Context, q EventQuery) ([]Event, error) {
	var ev []Event
	path := "/v1/events"
	if e := q.Values().Encode(); e != "" {
		path += "?" + e
	}
	err := c.do(ctx, http.MethodGet, path, nil, &ev)
	return ev, err
}

// Do calls any endpoint; later subsystems use it for their own routes.
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	return c.do(ctx, method, path, in, out)
}

// DBStatus is the database tier in detail: `haven db status --json` prints it.
type DBStatus struct {
	// Endpoint is the stable address apps connect to.
	Endpoint string `json:"endpoint"`
	// AppUser and AppDatabase are the application's role and database.
	AppUser     string `json:"app_user"`
	AppDatabase string `json:"app_database"`
	// AppAuth is how the app role authenticates: trust or scram-sha-256.
	AppAuth string `json:"app_auth"`
	// MultiAZ is true when a standby runs in the other zone.
	MultiAZ bool `json:"multi_az"`
	// Durability is preferred or required.
	Durability string `json:"durability"`
	// Epoch is the persisted epoch; EndpointEpoch the one the endpoint forwards for (0: none).
	Epoch         int64  `json:"epoch"`
	EndpointEpoch int64  `json:"endpoint_epoch"`
	Primary       string `json:"primary"`
	PrimaryZone   string `json:"primary_zone"`
	Standby       string `json:"standby,omitempty"`
	StandbyZone   string `json:"standby_zone,omitempty"`
	// StandbyEligible: the standby holds every acknowledged commit and may be promoted.
	StandbyEligible bool `json:"standby_eligible"`
	// SyncEnabled: the primary's synchronous_standby_names names the standby.
	SyncEnabled bool `json:"sync_enabled"`
	// SyncState is the primary's pg_stat_replication sync_state for the
	// standby (sync, async, potential) or "none" when it is not connected.
	SyncState string `json:"sync_state"`
	// ReplicationState is pg_stat_replication.state (streaming, catchup, ...) or "none".
	ReplicationState string `json:"replication_state"`
	// LagBytes is how far the standby's replay trails the primary's WAL
	// position; LagSeconds is pg_stat_replication.replay_lag (0 when idle).
	LagBytes   int64   `json:"lag_bytes"`
	LagSeconds float64 `json:"lag_seconds"`
	// Nodes are the servers.
	Nodes []DBNodeStatus `json:"nodes"`
	// LastPlan and LastError are the controller's most recent plan and failure.
	LastPlan  string `json:"last_plan,omitempty"`
	LastError string `json:"last_error,omitempty"`
	// Backups is the backup tier's summary (nil when backups are off).
	Backups *DBBackupSummary `json:"backups,omitempty"`
	// Restores are the restored servers still running.
	Restores []DBRestore `json:"restores,omitempty"`
}

// DBNodeStatus is one PostgreSQL server.
type DBNodeStatus struct {
	Name       string `json:"name"`
	Zone       string `json:"zone"`
	Address    string `json:"address"`
	Role       string `json:"role"`   // primary, standby, rebuilding, down
	Health     string `json:"health"` // up, slow, dead, unknown
	PID        int    `json:"pid,omitempty"`
	InRecovery bool   `json:"in_recovery"`
}

// DBBackupSummary is the backup tier at a glance.
type DBBackupSummary struct {
	Enabled bool   `json:"enabled"`
	Reason  string `json:"reason,omitempty"` // why backups are off
	Stanza  string `json:"stanza,omitempty"`
	Repo    string `json:"repo,omitempty"`
	// ArchiveFailing is true when PostgreSQL's archiver reports failures.
	ArchiveFailing bool   `json:"archive_failing"`
	LastArchived   string `json:"last_archived_wal,omitempty"`
}

// DBSwitchoverRequest asks for a planned switchover to the standby in ToZone.
type DBSwitchoverRequest struct {
	ToZone string `json:"to_zone,omitempty"` // default: the standby's zone
}

// DBSwitchoverResult is a finished switchover.
type DBSwitchoverResult struct {
	FromNode string  `json:"from_node"`
	ToNode   string  `json:"to_node"`
	ToZone   string  `json:"to_zone"`
	Epoch    int64   `json:"epoch"`
	TookMS   float64 `json:"took_ms"`
}

// Database fault kinds for DBFaultRequest.
const (
	DBFaultKill              = "kill"
	DBFaultFreeze            = "freeze"
	DBFaultThaw              = "thaw"
	DBFaultStandbyLoss       = "standby-loss"
	DBFaultControllerRestart = "controller-restart"
)

// DBFaultRequest injects a database fault: the db-<Kind> scenario of the
// failpoint catalogue, through POST /v1/faults.
type DBFaultRequest struct {
	// Kind is kill, freeze, thaw, standby-loss or controller-restart.
	Kind string `json:"kind"`
	// Node defaults to the current primary (the standby for standby-loss).
	Node string `json:"node,omitempty"`
	// DelayMS, for controller-restart: the primary is killed, and the
	// controller restarted this long after (0: at once), to land mid-failover.
	DelayMS int `json:"delay_ms,omitempty"`
}

// DBFaultResult says what was done and when.
type DBFaultResult struct {
	Kind string    `json:"kind"`
	Node string    `json:"node"`
	Zone string    `json:"zone"`
	PID  int       `json:"pid,omitempty"`
	At   time.Time `json:"at"` // when every process of the server had the signal
	// Epoch is the epoch before the fault.
	Epoch int64 `json:"epoch"`
	// RestartedAt and RestartEpoch (controller-restart): when the new
	// controller started and the persisted epoch it started from. An epoch
	// equal to Epoch means the failover was interrupted before it persisted.
	RestartedAt  time.Time `json:"restarted_at,omitempty"`
	RestartEpoch int64     `json:"restart_epoch,omitempty"`
}

// DBBackupRequest takes a backup now.
type DBBackupRequest struct {
	Type string `json:"type,omitempty"` // full (default) or incr
}

// DBBackup is one backup in the repository.
type DBBackup struct {
	Label     string    `json:"label"`
	Type      string    `json:"type"`
	Prior     string    `json:"prior,omitempty"`
	Start     time.Time `json:"start"`
	Stop      time.Time `json:"stop"`
	WALStart  string    `json:"wal_start"`
	WALStop   string    `json:"wal_stop"`
	SizeBytes int64     `json:"size_bytes"`
	RepoBytes int64     `json:"repo_bytes"`
}

// DBBackupList is the repository and the restorable window.
type DBBackupList struct {
	Backups            []DBBackup `json:"backups"`
	EarliestRestorable time.Time  `json:"earliest_restorable,omitempty"`
	LatestRestorable   time.Time  `json:"latest_restorable,omitempty"`
	// LatestRestorableLagSeconds is now minus LatestRestorable.
	LatestRestorableLagSeconds float64 `json:"latest_restorable_lag_s,omitempty"`
	WALMin                     string  `json:"wal_min,omitempty"`
	WALMax                     string  `json:"wal_max,omitempty"`
	// WALChainEnd is the last segment of the continuous WAL a restore from
	// the newest backup replays (along the timeline history). It equals
	// WALMax unless a segment is missing in between.
	WALChainEnd string `json:"wal_chain_end,omitempty"`
	// WALChainProblem says why nothing is restorable from the newest
	// backup although WAL is archived.
	WALChainProblem string `json:"wal_chain_problem,omitempty"`
}

// DBRestoreRequest restores the backups to a point in time into a new server.
type DBRestoreRequest struct {
	ToTime time.Time `json:"to_time"`
	// Port for the new server on 127.0.0.1. Default: a free port.
	Port int `json:"port,omitempty"`
}

// DBRestore is a restored server, running until `haven db restore-stop` or `haven down`.
type DBRestore struct {
	ID           string    `json:"id"`
	Target       time.Time `json:"target"`
	Backup       string    `json:"backup"`
	Address      string    `json:"address"`
	DSN          string    `json:"dsn"` // the app role and database, over TCP
	DataDir      string    `json:"data_dir"`
	LogFile      string    `json:"log_file"`
	PID          int       `json:"pid,omitempty"`
	LastReplayed time.Time `json:"last_replayed,omitempty"`
	TookMS       float64   `json:"took_ms"`
}

// DBStatus returns the database tier's detailed status.
func (c *Client) DBStatus(ctx context.Context) (DBStatus, error) {
	var s DBStatus
	err := c.do(ctx, http.MethodGet, "/v1/db/status", nil, &s)
	return s, err
}

// DBSwitchover performs a planned switchover.
func (c *Client) DBSwitchover(ctx context.Context, r DBSwitchoverRequest) (DBSwitchoverResult, error) {
	var out DBSwitchoverResult
	err := c.do(ctx, http.MethodPost, "/v1/db/switchover", r, &out)
	return out, err
}

// DBFault injects a database fault (the db-<kind> fault scenario).
func (c *Client) DBFault(ctx context.Context, r DBFaultRequest) (DBFaultResult, error) {
	res, err := c.Fault(ctx, FaultRequest{Scenario: "db-" + r.Kind, Target: r.Node, DelayMS: r.DelayMS})
	return DBFaultResult{Kind: r.Kind, Node: res.Target, Zone: res.Zone, PID: res.PID, At: res.At, Epoch: res.Epoch,
		RestartedAt: res.RestartedAt, RestartEpoch: res.RestartEpoch}, err
}

// DBBackup takes a backup now and returns it.
func (c *Client) DBBackup(ctx context.Context, r DBBackupRequest) (DBBackup, error) {
	var out DBBackup
	err := c.do(ctx, http.MethodPost, "/v1/db/backups", r, &out)
	return out, err
}

// DBBackups lists the backups and the restorable window.
func (c *Client) DBBackups(ctx context.Context) (DBBackupList, error) {
	var out DBBackupList
	err := c.do(ctx, http.MethodGet, "/v1/db/backups", nil, &out)
	return out, err
}

// DBRestore restores to a point in time into a new server and leaves it running.
func (c *Client) DBRestore(ctx context.Context, r DBRestoreRequest) (DBRestore, error) {
	var out DBRestore
	err := c.do(ctx, http.MethodPost, "/v1/db/restore", r, &out)
	return out, err
}

// DBRestores lists the restored servers still running.
func (c *Client) DBRestores(ctx context.Context) ([]DBRestore, error) {
	var out []DBRestore
	err := c.do(ctx, http.MethodGet, "/v1/db/restores", nil, &out)
	return out, err
}

// DBRestoreStop stops a restored server (its data directory is kept).
func (c *Client) DBRestoreStop(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/v1/db/restores/"+id, nil, nil)
}

// DBDrillLogin is a login for drills: a dedicated role with a fresh random
// password (set as a SCRAM verifier), allowed to create its own tables in
// the app database. It is only ever sent over the daemon's 0600 socket.
type DBDrillLogin struct {
	User     string `json:"user"`
	Password string `json:"password"`
	Database string `json:"database"`
	Endpoint string `json:"endpoint"`
}

// DBDrillLogin creates (or re-keys) the drill role and returns its login.
func (c *Client) DBDrillLogin(ctx context.Context) (DBDrillLogin, error) {
	var out DBDrillLogin
	err := c.do(ctx, http.MethodPost, "/v1/db/drill-login", nil, &out)
	return out, err
}

// DBDrillLogout clears the drill role's password: the login DBDrillLogin
// returned stops working.
func (c *Client) DBDrillLogout(ctx context.Context) error {
	return c.do(ctx, http.MethodDelete, "/v1/db/drill-login", nil, nil)
}

// ConsoleLogin is a one-time link into the web console (POST
// /v1/console/login): used once, within minutes, it signs a browser in.
type ConsoleLogin struct {
	URL string `json:"url"`
}

// ConsoleLogin asks the daemon for a one-time console login link.
func (c *Client) ConsoleLogin(ctx context.Context) (ConsoleLogin, error) {
	var out ConsoleLogin
	err := c.do(ctx, http.MethodPost, "/v1/console/login", nil, &out)
	return out, err
}
