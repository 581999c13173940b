package fleet

import (
	"context"
	"fmt"
	"slices"

	"github.com/haven-platform/haven/internal/zone"
)

// ReasonRefresh is the launch reason of an instance refresh's launches.
const ReasonRefresh = "instance-refresh"

// Template returns the launch template capacity launches use.
func (f *Fleet) Template() LaunchTemplate {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cfg.Template
}

// SetTemplate makes t the template of every later capacity launch
// (scale-out, replacement, rebalancing): a release's version once its
// rollout succeeded or rolled back. Running instances are left alone. t
// must keep the fleet's port: with a Network, every instance listens on it.
func (f *Fleet) SetTemplate(t LaunchTemplate) error {
	if len(t.Command) == 0 || t.Command[0] == "" {
		return fmt.Errorf("set template of fleet %s: command: required", f.cfg.Name)
	}
	if f.cfg.Network != nil && t.Port != f.cfg.Template.Port {
		return fmt.Errorf("set template of fleet %s: port %d: instances in a network listen on %d", f.cfg.Name, t.Port, f.cfg.Template.Port)
	}
	if _, err := f.SetLaunchTemplate(t); err != nil {
		return err
	}
	return nil
}

// SetRefresh hands launches and terminations to an instance refresh (on)
// or back to the fleet's plan (off). While on, the fleet launches nothing
// and scales nothing in or across zones by itself; it still notices exits
// and stops instances unhealthy past their grace period, which the refresh
// sees as lost. Turned off, the plan trims or fills to desired capacity.
func (f *Fleet) SetRefresh(on bool) {
	f.mu.Lock()
	f.refresh = on
	f.mu.Unlock()
	f.poke()
}

// Launch starts one instance of t in zone zoneName now, outside the plan:
// an instance refresh's launch before terminate. It returns the new
// instance's ID once its process runs and it is registered.
func (f *Fleet) Launch(ctx context.Context, t LaunchTemplate, zoneName string) (string, error) {
	zi := slices.IndexFunc(f.cfg.Zones, func(z *zone.Zone) bool { return z.Name == zoneName })
	if zi < 0 {
		return "", fmt.Errorf("launch in zone %s: the fleet has no such zone", zoneName)
	}
	if f.cfg.Network != nil && t.Port != f.cfg.Template.Port {
		return "", fmt.Errorf("launch in zone %s: port %d: instances in a network listen on %d", zoneName, t.Port, f.cfg.Template.Port)
	}
	f.mu.Lock()
	running := f.running
	f.mu.Unlock()
	if !running {
		return "", fmt.Errorf("launch in zone %s: fleet %s is not running", zoneName, f.cfg.Name)
	}
	id, err := f.launch(ctx, t, zi, ReasonRefresh)
	if err != nil {
		if f.cfg.OnEvent != nil {
			f.cfg.OnEvent(Event{Time: f.clock.Now(), Fleet: f.cfg.Name, Type: EventLaunchFailed, Zone: zoneName, Reason: err.Error()})
		}
		return "", err
	}
	f.poke()
	return id, nil
}
