// Package failpoint is the one way faults are injected: every fault is a named scenario in one catalogue, armed in haven's own code or injected into a process by the daemon.
package failpoint

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"syscall"
)

// Kind says how a scenario is injected.
type Kind string

const (
	// Point is a place in haven's code that fails when armed (Set.Hit).
	Point Kind = "point"
	// External is done to a process from outside, through the daemon API
	// (POST /v1/faults): signals, a controller restart.
	External Kind = "external"
)

// Action is what an armed point does.
type Action string

const (
	// Error makes the operation at the point fail with ErrInjected.
	Error Action = "error"
	// Crash SIGKILLs the whole process at the point, like a power loss.
	Crash Action = "crash"
)

// Scenario is one named fault.
type Scenario struct {
	Name string `json:"name"`
	// Tier is the tier it hits: database, fleet, secrets.
	Tier string `json:"tier"`
	Kind Kind   `json:"kind"`
	// Action is what an armed point does by default (points only).
	Action Action `json:"action,omitempty"`
	// What says what happens, in a sentence.
	What string `json:"what"`
}

// The scenarios' names.
const (
	DBKill              = "db-kill"
	DBFreeze            = "db-freeze"
	DBThaw              = "db-thaw"
	DBStandbyLoss       = "db-standby-loss"
	DBControllerRestart = "db-controller-restart"
	InstanceKill        = "instance-kill"
	InstanceFreeze      = "instance-freeze"
	InstanceThaw        = "instance-thaw"
	InstanceTerm        = "instance-term"
	ZonePower           = "zone-power"
	ZonePartition       = "zone-partition"
	ZoneDegrade         = "zone-degrade"
	ZoneRestore         = "zone-restore"
	// SecretsCrashAfterSetSecret crashes the daemon between a rotation's
	// setSecret and finishSecret steps.
	SecretsCrashAfterSetSecret = "secrets-crash-after-setsecret"
	// ApplyCrashAfterStep crashes the daemon after an apply's first
	// component changed and the journal recorded it.
	ApplyCrashAfterStep = "apply-crash-after-step"
	// StoreAfterTempWrite aborts a secret store write after its temp file is
	// synced, before the rename.
	StoreAfterTempWrite = "store-after-temp-write"
)

// Catalog is every scenario, the one list docs/drills.md describes.
var Catalog = []Scenario{
	{Name: DBKill, Tier: "database", Kind: External, What: "SIGKILL every process of a database node (default: the primary): a crashed server"},
	{Name: DBFreeze, Tier: "database", Kind: External, What: "SIGSTOP every process of a database node (default: the primary): a hung server that still accepts connections"},
	{Name: DBThaw, Tier: "database", Kind: External, What: "SIGCONT every process of a node: what is left of a frozen server runs again"},
	{Name: DBStandbyLoss, Tier: "database", Kind: External, What: "SIGKILL every process of the standby"},
	{Name: DBControllerRestart, Tier: "database", Kind: External, What: "SIGKILL the primary, wait delay_ms, then restart the failover controller alone from its state file (a crash mid-failover)"},
	{Name: InstanceKill, Tier: "fleet", Kind: External, What: "SIGKILL an instance's process group: a lost server"},
	{Name: InstanceFreeze, Tier: "fleet", Kind: External, What: "SIGSTOP an instance's process group: a hung server"},
	{Name: InstanceThaw, Tier: "fleet", Kind: External, What: "SIGCONT an instance's process group"},
	{Name: InstanceTerm, Tier: "fleet", Kind: External, What: "SIGTERM an instance's process group: the app shuts down gracefully"},
	{Name: ZonePower, Tier: "zones", Kind: External, What: "SIGKILL every process of a zone (its instances and its database node) and start nothing there until zone-restore: the zone loses power"},
	{Name: ZonePartition, Tier: "zones", Kind: External, What: "drop every packet on a zone's links until zone-restore: connections to, from and within the zone hang; nothing is launched there meanwhile"},
	{Name: ZoneDegrade, Tier: "zones", Kind: External, What: "drop each packet on a zone's links with probability loss_percent (nftables numgen) until zone-restore; loss only: this kernel has no netem, so no latency"},
	{Name: ZoneRestore, Tier: "zones", Kind: External, What: "end a zone's fault: the power or the network returns, the database node rejoins as a standby, the fleet rebalances into the zone"},
	{Name: ApplyCrashAfterStep, Tier: "region", Kind: Point, Action: Crash, What: "the daemon dies in the middle of haven apply, after its first change is made and journaled; the next up ends the region fully on one spec and the journal says which"},
	{Name: SecretsCrashAfterSetSecret, Tier: "secrets", Kind: Point, Action: Crash, What: "the daemon dies right after a rotation's setSecret step; the next start finishes or rolls back the rotation"},
	{Name: StoreAfterTempWrite, Tier: "secrets", Kind: Point, Action: Error, What: "a secret store write stops after its temp file is synced, before the rename, as a crash would; the write fails and nothing changes"},
}

// Lookup finds a scenario by name.
func Lookup(name string) (Scenario, bool) {
	for _, s := range Catalog {
		if s.Name == name {
			return s, true
		}
	}
	return Scenario{}, false
}

// Names lists the scenarios of kind k.
func Names(k Kind) []string {
	var out []string
	for _, s := range Catalog {
		if s.Kind == k {
			out = append(out, s.Name)
		}
	}
	sort.Strings(out)
	return out
}

// ErrInjected is what an armed point with action Error returns.
var ErrInjected = errors.New("failpoint: injected failure")

// Env is the daemon's variable that arms points at start:
// HAVEN_FAILPOINT=name[=action][,name[=action]...].
const Env = "HAVEN_FAILPOINT"

// Set is the armed points of one process. The nil *Set has nothing armed.
// It is safe for concurrent use.
type Set struct {
	mu    sync.Mutex
	armed map[string]Action
	kill  func() // Crash; default SIGKILL of this process
}

// NewSet returns an empty set.
func NewSet() *Set { return &Set{armed: map[string]Action{}} }

// Parse arms the points a HAVEN_FAILPOINT value names ("" arms none).
func Parse(v string) (*Set, error) {
	s := NewSet()
	for _, part := range strings.Split(v, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, action, _ := strings.Cut(part, "=")
		if err := s.Arm(name, Action(action)); err != nil {
			return nil, fmt.Errorf("%s=%s: %w", Env, v, err)
		}
	}
	return s, nil
}

// Arm arms the point name with action ("" for the scenario's default).
func (s *Set) Arm(name string, a Action) error {
	sc, ok := Lookup(name)
	if !ok || sc.Kind != Point {
		return fmt.Errorf("failpoint %q: not a point; the points are %s", name, strings.Join(Names(Point), ", "))
	}
	if a == "" {
		a = sc.Action
	}
	if a != Error && a != Crash {
		return fmt.Errorf("failpoint %s: action %q: must be error or crash", name, a)
	}
	s.mu.Lock()
	s.armed[name] = a
	s.mu.Unlock()
	return nil
}

// Disarm disarms the point name.
func (s *Set) Disarm(name string) {
	s.mu.Lock()
	delete(s.armed, name)
	s.mu.Unlock()
}

// Armed lists the armed points.
func (s *Set) Armed() []string {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for n := range s.armed {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Hit is called at the point name: it returns nil when the point is not
// armed, ErrInjected when it is armed with Error, and does not return when
// it is armed with Crash.
func (s *Set) Hit(name string) error {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	a, ok := s.armed[name]
	kill := s.kill
	s.mu.Unlock()
	switch {
	case !ok:
		return nil
	case a == Crash:
		if kill == nil {
			kill = func() { _ = syscall.Kill(os.Getpid(), syscall.SIGKILL); select {} }
		}
		kill()
		return fmt.Errorf("%s: %w (crash)", name, ErrInjected)
	}
	return fmt.Errorf("%s: %w", name, ErrInjected)
}
