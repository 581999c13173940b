package zone

import (
	"errors"
	"fmt"
	"hash/fnv"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/haven-platform/haven/internal/clock"
)

// DefaultLeaseDir is where region leases live. /run is a tmpfs: a lease
// ends at reboot, as the namespaces and links it stands for do.
const DefaultLeaseDir = "/run/haven/vpc"

// DefaultLeaseGrace is how long a fresh lease counts as alive whatever
// LeaseConfig.Alive says: the time its region takes to build its VPC.
const DefaultLeaseGrace = time.Minute

// ErrNoSlot is returned by Claim when every region slot is held by a live region.
var ErrNoSlot = errors.New("every region slot of 198.18.0.0/15 is in use")

// Lease is one region's hold on a slot of Space: the /19 its VPC's
// addresses come from. Two regions on one machine never hold the same slot,
// so their addresses (and the host routes to them) never collide.
//
// A lease is a file, LeaseDir/slot-NN, holding the region's key. Claims and
// releases take an exclusive flock on LeaseDir/lock, so concurrent regions
// (or test binaries) never race; the flock dies with its process, the file
// does not, so a SIGKILLed daemon's region keeps its slot (and addresses)
// for its restart or its sweep.
type Lease struct {
	// Slot is the region slot, 0 to Slots-1.
	Slot int
	// Prefix is the slot's range (SlotPrefix(Slot)), for Config.VPC.
	Prefix netip.Prefix
	// Key identifies the region holding the lease (its state directory).
	Key string

	dir string
}

// LeaseConfig says who claims a lease and how stale leases are recognised.
type LeaseConfig struct {
	// Dir is the lease directory. Default DefaultLeaseDir.
	Dir string
	// Key identifies the region, e.g. its absolute state directory.
	// Required; one line, at most 4096 bytes.
	Key string
	// Alive reports whether the region holding a lease still has a VPC (its
	// router namespace exists). A slot whose holder is not alive and whose
	// lease is older than Grace is taken over. Default: every holder is
	// alive, so only Release frees a slot.
	Alive func(key string) bool
	// Grace is how long a new lease counts as alive whatever Alive says.
	// Default DefaultLeaseGrace.
	Grace time.Duration
	// Clock gives the time leases are aged by. Default clock.Real.
	Clock clock.Clock
}

// PreferredSlot is the slot Claim tries first for key (then the following
// ones, wrapping): a hash of the key, so a region gets the same addresses
// each time while its neighbours stay the same.
func PreferredSlot(key string) int {
	h := fnv.New32a()
	h.Write([]byte(key))
	return int(h.Sum32() % Slots)
}

// Claim returns the lease of cfg.Key: the one it already holds, or a new one
// on the first free slot from PreferredSlot on, taking over the slot of a
// region that is no longer alive.
func Claim(cfg LeaseConfig) (Lease, error) {
	if cfg.Key == "" || len(cfg.Key) > 4096 || strings.ContainsAny(cfg.Key, "\n\x00") {
		return Lease{}, fmt.Errorf("claim region range: key must be one non-empty line of at most 4096 bytes, got %q", cfg.Key)
	}
	if cfg.Dir == "" {
		cfg.Dir = DefaultLeaseDir
	}
	if cfg.Grace == 0 {
		cfg.Grace = DefaultLeaseGrace
	}
	clk := clock.Or(cfg.Clock)
	unlock, err := lockLeases(cfg.Dir)
	if err != nil {
		return Lease{}, err
	}
	defer unlock()

	held, err := readLeases(cfg.Dir)
	if err != nil {
		return Lease{}, err
	}
	for slot, h := range held {
		if h.key == cfg.Key {
			// Restart the grace period: the region may be rebuilding its VPC.
			now := clk.Now()
			if err := os.Chtimes(slotPath(cfg.Dir, slot), now, now); err != nil {
				return Lease{}, fmt.Errorf("claim region range: renew lease: %w", err)
			}
			return newLease(cfg.Dir, slot, cfg.Key), nil
		}
	}
	pref := PreferredSlot(cfg.Key)
	for i := range Slots {
		slot := (pref + i) % Slots
		h, taken := held[slot]
		if taken {
			if cfg.Alive == nil || clk.Now().Sub(h.mtime) < cfg.Grace || cfg.Alive(h.key) {
				continue
			}
		}
		if err := writeLease(cfg.Dir, slot, cfg.Key, clk.Now()); err != nil {
			return Lease{}, err
		}
		return newLease(cfg.Dir, slot, cfg.Key), nil
	}
	var holders []string
	for slot, h := range held {
		holders = append(holders, fmt.Sprintf("%d=%s", slot, h.key))
	}
	sort.Strings(holders)
	return Lease{}, fmt.Errorf("claim region range: %w (held by %s): stop a region with `haven down`, or remove a stale lease file in %s", ErrNoSlot, strings.Join(holders, ", "), cfg.Dir)
}

// FindLease returns key's lease in dir (DefaultLeaseDir if empty), if it holds one.
func FindLease(dir, key string) (Lease, bool, error) {
	if dir == "" {
		dir = DefaultLeaseDir
	}
	held, err := readLeases(dir)
	if err != nil {
		return Lease{}, false, err
	}
	for slot, h := range held {
		if h.key == key {
			return newLease(dir, slot, key), true, nil
		}
	}
	return Lease{}, false, nil
}

// Release gives the slot back. It is a no-op when the slot is no longer
// held by this lease's key (released already, or taken over).
func (l Lease) Release() error {
	if l.dir == "" {
		return nil
	}
	unlock, err := lockLeases(l.dir)
	if err != nil {
		return err
	}
	defer unlock()
	held, err := readLeases(l.dir)
	if err != nil {
		return err
	}
	if h, ok := held[l.Slot]; !ok || h.key != l.Key {
		return nil
	}
	if err := os.Remove(slotPath(l.dir, l.Slot)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("release region range %s: %w", l.Prefix, err)
	}
	return nil
}

func newLease(dir string, slot int, key string) Lease {
	p, _ := SlotPrefix(slot)
	return Lease{Slot: slot, Prefix: p, Key: key, dir: dir}
}

type holder struct {
	key   string
	mtime time.Time
}

func slotPath(dir string, slot int) string {
	return filepath.Join(dir, fmt.Sprintf("slot-%02d", slot))
}

// lockLeases creates dir if needed and takes its exclusive lock.
func lockLeases(dir string) (unlock func(), err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("claim region range: create lease dir: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("claim region range: open lease lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("claim region range: lock %s: %w", f.Name(), err)
	}
	return func() { f.Close() }, nil // closing the file drops the flock
}

// readLeases returns the holder of every slot in dir.
func readLeases(dir string) (map[int]holder, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return map[int]holder{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read leases: %w", err)
	}
	held := map[int]holder{}
	for _, e := range ents {
		n, ok := strings.CutPrefix(e.Name(), "slot-")
		if !ok {
			continue
		}
		slot, err := strconv.Atoi(n)
		if err != nil || slot < 0 || slot >= Slots {
			continue
		}
		path := filepath.Join(dir, e.Name())
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read lease: %w", err)
		}
		fi, err := os.Stat(path)
		if err != nil {
			return nil, fmt.Errorf("read lease: %w", err)
		}
		held[slot] = holder{key: strings.TrimSuffix(string(b), "\n"), mtime: fi.ModTime()}
	}
	return held, nil
}

// writeLease replaces slot's lease file with one holding key, dated now, atomically.
func writeLease(dir string, slot int, key string, now time.Time) error {
	tmp := slotPath(dir, slot) + ".tmp"
	if err := os.WriteFile(tmp, []byte(key+"\n"), 0o644); err != nil {
		return fmt.Errorf("write lease: %w", err)
	}
	if err := os.Chtimes(tmp, now, now); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write lease: %w", err)
	}
	if err := os.Rename(tmp, slotPath(dir, slot)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write lease: %w", err)
	}
	return nil
}
