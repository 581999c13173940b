package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/haven-platform/haven/internal/api"
	"github.com/haven-platform/haven/internal/proc"
	"github.com/haven-platform/haven/internal/region"
	"github.com/haven-platform/haven/internal/termsafe"
)

func newStatusCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the region: endpoints, zones, fleet capacity, instances and their health",
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := g.client().Status(cmd.Context())
			if err != nil {
				return err
			}
			st.Spec.Drift = drift(cmd.Context(), g.client(), g.specFile, st.Spec.Hash)
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), st)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "region %s: %s (pid %d, up %s)\n", st.Region, st.Phase, st.PID, time.Since(st.StartedAt).Round(time.Second))
			if st.Error != "" {
				fmt.Fprintf(w, "error: %s\n", st.Error)
			}
			fmt.Fprintf(w, "https %s   ca %s   database %s\n", st.Endpoints.HTTPS, st.Endpoints.CACert, st.Endpoints.Database)
			fmt.Fprint(w, specLine(st.Spec))
			fmt.Fprint(w, networkStatus(st))
			fmt.Fprint(w, compactStatus(st))
			fmt.Fprint(w, storageStatus(st))
			if st.Database != nil {
				fmt.Fprintf(w, "database epoch %d, primary %s\n", st.Database.Epoch, st.Database.Primary)
				for _, n := range st.Database.Nodes {
					fmt.Fprintf(w, "  %-8s zone %-2s %-16s %-8s %s\n", n.Name, n.Zone, n.Address, n.Role, n.State)
				}
			}
			if st.Identity != nil {
				fmt.Fprint(w, identityStatus(st.Identity, false))
			}
			for _, warn := range st.Warnings {
				fmt.Fprintf(w, "warning: %s\n", warn)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the status as JSON")
	addSpecFlag(cmd, g)
	return cmd
}

// storageStatus renders the edge and the object store.
func storageStatus(st api.Status) string {
	var b strings.Builder
	if e := st.Edge; e != nil {
		fmt.Fprintf(&b, "edge %s: %d requests, hit ratio %.1f%% (%d hits, %d refresh hits, %d misses, %d stale-if-error), %d denied, %d objects cached (%d bytes)\n",
			e.URL, e.Requests, 100*e.HitRatio, e.Hits, e.RefreshHits, e.Misses, e.StaleIfError, e.Denied, e.Objects, e.Bytes)
		for _, line := range e.Behaviors {
			fmt.Fprintf(&b, "  %s\n", line)
		}
	}
	if o := st.ObjStore; o != nil {
		state := "serving"
		if !o.Reachable {
			state = "NOT ANSWERING: " + o.Error
		}
		fmt.Fprintf(&b, "object store %s (pid %d): %s, %d requests (%d not OK), %d live credentials, upload limit %d bytes\n",
			o.Endpoint, o.PID, state, o.Requests, o.Errors, o.Credentials, o.MaxUploadBytes)
		for _, bk := range o.Buckets {
			fmt.Fprintf(&b, "  bucket %s: %d objects, %d bytes, %d incomplete uploads\n", bk.Name, bk.Objects, bk.Bytes, bk.IncompleteUploads)
		}
	}
	return b.String()
}

// networkStatus renders the network and the zones: in a VPC each zone's
// subnets and fault, on loopback each zone's range and why there is no VPC.
func networkStatus(st api.Status) string {
	var b strings.Builder
	n := st.Network
	if n.Mode == "vpc" {
		fmt.Fprintf(&b, "network vpc %s (namespaces %s-*, host %s), database endpoint %s inside; security groups %s enforced\n",
			n.Range, n.Prefix, n.HostAddr, n.DBEndpoint, strings.Join(n.SecurityGroups, ", "))
	} else if n.Mode != "" {
		fmt.Fprintf(&b, "network loopback: %s\n", n.Why)
	}
	for _, z := range st.Zones {
		line := fmt.Sprintf("  zone %s (%s)", z.Name, z.AZ)
		if len(z.Subnets) > 0 {
			line += fmt.Sprintf(": public %s, app %s, db %s", z.Subnets["public"], z.Subnets["app"], z.Subnets["db"])
		} else {
			line += ": " + z.CIDR
		}
		if z.Fault != "" {
			line += "; FAULT: " + z.Fault
		}
		if z.Impaired {
			line += "; impaired (nothing launched there)"
		}
		b.WriteString(line + "\n")
	}
	return b.String()
}

// compactStatus renders the fleet as a small table.
func compactStatus(st api.Status) string {
	var b strings.Builder
	f := st.Fleet
	fmt.Fprintf(&b, "fleet min %d desired %d max %d: %d in service, %d pending, %d healthy (health check %s)", f.Min, f.Desired, f.Max, f.InService, f.Pending, f.Healthy, f.HealthCheckType)
	if f.Scaling != "" {
		fmt.Fprintf(&b, "; scaling %s", f.Scaling)
	}
	if f.AvgCPU != nil {
		fmt.Fprintf(&b, ", average CPU %.0f %%", *f.AvgCPU)
	}
	b.WriteString("\n")
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  INSTANCE\tZONE\tADDRESS\tSUBNET\tSTATE\tHEALTH\tIN-FLIGHT\tCPU")
	for _, in := range st.Instances {
		cpu := "-"
		if in.CPU != nil {
			cpu = fmt.Sprintf("%.0f%%", *in.CPU)
		}
		if in.Warming {
			cpu += " (warming)"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", in.ID, in.AZ, in.Address, in.Subnet, in.State, in.Health, in.InFlight, cpu)
	}
	tw.Flush()
	return b.String()
}

func newDownCmd(g *globals) *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "down",
		Short: "Stop the region: drain and stop every instance, stop the database and the daemon",
		RunE: func(cmd *cobra.Command, _ []string) error {
			c := g.client()
			st, err := c.Status(cmd.Context())
			if err != nil {
				if errors.Is(err, api.ErrNotRunning) {
					return cleanUpAfterCrash(cmd.Context(), cmd.ErrOrStderr(), g.dir())
				}
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "haven: stopping region %q (pid %d)...\n", st.Region, st.PID)
			if err := c.Shutdown(cmd.Context()); err != nil {
				return fmt.Errorf("stop region: %w", err)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			if err := waitGone(ctx, st.PID); err != nil {
				return fmt.Errorf("stop region: daemon pid %d still running after %s: %w", st.PID, timeout, err)
			}
			fmt.Fprintln(cmd.ErrOrStderr(), "haven: region stopped")
			return nil
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 2*time.Minute, "how long to wait for the daemon to exit")
	return cmd
}

// cleanUpAfterCrash is `down` with no daemon running: a daemon that died
// without stopping may have left processes, cgroups and the database
// endpoint's nftables table; remove them.
func cleanUpAfterCrash(ctx context.Context, w io.Writer, dir string) error {
	l, err := region.CleanUp(ctx, dir, nil)
	if errors.Is(err, region.ErrStateDirLocked) {
		return fmt.Errorf("a daemon holds %s but does not answer on its socket yet (it may be starting); run `haven status` in a moment, then `haven down` again", dir)
	}
	if err != nil {
		return fmt.Errorf("no daemon is running in %s, and cleaning up after the last one failed: %w", dir, err)
	}
	if l.Empty() {
		fmt.Fprintf(w, "haven: no region is running in %s; nothing to stop\n", dir)
		return nil
	}
	fmt.Fprintf(w, "haven: no daemon is running in %s, but the last one died without stopping; removed what it left:\n", dir)
	if len(l.Processes) > 0 {
		fmt.Fprintf(w, "  %d database processes (killed: %v)\n", len(l.Processes), l.Processes)
	}
	if len(l.Cgroups) > 0 {
		fmt.Fprintf(w, "  cgroups %s, with any instance still in them\n", strings.Join(l.Cgroups, ", "))
	}
	if l.Table != "" {
		fmt.Fprintf(w, "  nftables table %s (the database endpoint's forwarding)\n", l.Table)
	}
	if l.ObjStore != 0 {
		fmt.Fprintf(w, "  the object store (pid %d), stopped; its data stays in the state dir\n", l.ObjStore)
	}
	if n := l.Network; n != nil {
		if len(n.Namespaces) > 0 {
			fmt.Fprintf(w, "  network namespaces %s\n", strings.Join(n.Namespaces, ", "))
		}
		if len(n.Killed) > 0 {
			fmt.Fprintf(w, "  %d processes still in them (killed: %v)\n", len(n.Killed), n.Killed)
		}
		if len(n.Links) > 0 {
			fmt.Fprintf(w, "  host links %s (and their routes)\n", strings.Join(n.Links, ", "))
		}
		if len(n.Tables) > 0 {
			fmt.Fprintf(w, "  nftables tables %s\n", strings.Join(n.Tables, ", "))
		}
		if n.Lease {
			fmt.Fprintln(w, "  the region's address lease")
		}
	}
	return nil
}

// waitGone waits until the process pid no longer exists (a zombie counts as gone).
func waitGone(ctx context.Context, pid int) error {
	for proc.Alive(pid) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}

func newInstanceCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "instance", Short: "List app instances or send one a signal"}
	var asJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List instances",
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := g.client().Status(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), st.Instances)
			}
			fmt.Fprint(cmd.OutOrStdout(), compactStatus(st))
			return nil
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	kill := &cobra.Command{
		Use:   "signal ID SIGNAL",
		Short: "Send KILL, STOP, CONT or TERM to an instance (a manual failure)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.client().SignalInstance(cmd.Context(), args[0], strings.ToUpper(args[1])); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "sent SIG%s to %s\n", strings.TrimPrefix(strings.ToUpper(args[1]), "SIG"), args[0])
			return nil
		},
	}
	cmd.AddCommand(list, kill)
	return cmd
}

func newFleetCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "fleet", Short: "Change the fleet's capacity; show its scaling activity, schedule and scaler"}
	var min, desired, max int
	scale := &cobra.Command{
		Use:   "scale",
		Short: "Set min, desired and max capacity (flags left out keep their value)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			var r api.CapacityRequest
			if cmd.Flags().Changed("min") {
				r.Min = &min
			}
			if cmd.Flags().Changed("desired") {
				r.Desired = &desired
			}
			if cmd.Flags().Changed("max") {
				r.Max = &max
			}
			return g.client().SetCapacity(cmd.Context(), r)
		},
	}
	scale.Flags().IntVar(&min, "min", 0, "minimum capacity")
	scale.Flags().IntVar(&desired, "desired", 0, "desired capacity")
	scale.Flags().IntVar(&max, "max", 0, "maximum capacity")
	cmd.AddCommand(scale)
	cmd.AddCommand(scalingCmds(g)...)
	return cmd
}

func newEventsCmd(g *globals) *cobra.Command {
	var asJSON, follow bool
	var since time.Duration
	var component string
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Show the region's event log: launches, health, failovers with their epoch and RTO, fences, rejoins, rotations, backups",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := api.EventQuery{Component: component}
			if since > 0 {
				q.Since = time.Now().Add(-since)
			}
			c := g.client()
			for {
				ev, err := c.Events(cmd.Context(), q)
				if err != nil {
					if follow && errors.Is(cmd.Context().Err(), context.Canceled) {
						return nil
					}
					return err
				}
				if asJSON && !follow {
					return writeJSON(cmd.OutOrStdout(), ev)
				}
				for _, e := range ev {
					if asJSON {
						b, _ := json.Marshal(e) // one JSON object a line while following
						fmt.Fprintln(cmd.OutOrStdout(), string(termsafe.JSON(b)))
					} else {
						printEvents(cmd.OutOrStdout(), []api.Event{e})
					}
					q.After = max(q.After, e.Seq)
				}
				if !follow {
					return nil
				}
				select {
				case <-cmd.Context().Done():
					return nil
				case <-time.After(250 * time.Millisecond):
				}
			}
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON (with --follow: one event a line)")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new events until interrupted")
	cmd.Flags().DurationVar(&since, "since", 0, "only events newer than this, e.g. 10m")
	cmd.Flags().StringVar(&component, "component", "", "only events of this component: region, db, backup, secrets, fleet, scaling, lb, drill")
	return cmd
}

func printEvents(w io.Writer, ev []api.Event) {
	for _, e := range ev {
		// One event a line, whatever its text holds (termsafe.String
		// escapes newlines too).
		fmt.Fprintf(w, "%s  %-8s %-20s %-22s %s\n", e.Time.Format("15:04:05.000"), termsafe.String(e.Component),
			termsafe.String(e.Kind), termsafe.String(e.Subject), termsafe.String(e.Message))
	}
}
