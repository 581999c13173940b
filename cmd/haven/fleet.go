package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/haven-platform/haven/internal/api"
)

// scalingCmds are the fleet's scaling commands: activity, schedule, scaling
// status, suspend and resume.
func scalingCmds(g *globals) []*cobra.Command {
	return []*cobra.Command{newFleetActivityCmd(g), newFleetScheduleCmd(g), newFleetScalingCmd(g), newFleetSuspendCmd(g, true), newFleetSuspendCmd(g, false)}
}

func newFleetActivityCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "activity",
		Short: "List each change of the fleet's desired capacity with its cause (AWS: describe-scaling-activities)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			acts, err := g.client().FleetActivity(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), acts)
			}
			printActivities(cmd.OutOrStdout(), acts)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	return cmd
}

func printActivities(w io.Writer, acts []api.ScalingActivity) {
	if len(acts) == 0 {
		fmt.Fprintln(w, "no scaling activity yet")
		return
	}
	for _, a := range acts {
		fmt.Fprintf(w, "%4d  %s  %-15s %2d → %-2d  %s\n", a.ID, a.At.UTC().Format("2006-01-02T15:04:05Z"), a.Kind, a.From, a.To, a.Cause)
	}
}

func newFleetScheduleCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "schedule",
		Short: "List the next runs of the fleet's scheduled actions",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := g.client().FleetSchedule(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), s)
			}
			printSchedule(cmd.OutOrStdout(), s)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	return cmd
}

func printSchedule(w io.Writer, s api.FleetSchedule) {
	switch {
	case s.Suspended:
		fmt.Fprintln(w, "scaling is suspended: no scheduled action runs (haven fleet resume)")
		return
	case len(s.Actions) == 0:
		fmt.Fprintln(w, "no scheduled actions (fleet.scaling[].scheduled in the spec)")
		return
	case len(s.Runs) == 0:
		fmt.Fprintf(w, "no upcoming runs of %s (past their end, or one-time actions that ran)\n", strings.Join(s.Actions, ", "))
		return
	}
	for _, r := range s.Runs {
		fmt.Fprintf(w, "%s  %-20s %s  (in %s)\n", r.At.UTC().Format("2006-01-02T15:04:05Z"), r.Action, sets(r.Min, r.Max, r.Desired), time.Until(r.At).Round(time.Second))
	}
}

func sets(minC, maxC, desired *int) string {
	var parts []string
	for _, v := range []struct {
		n string
		p *int
	}{{"min", minC}, {"max", maxC}, {"desired", desired}} {
		if v.p != nil {
			parts = append(parts, fmt.Sprintf("%s %d", v.n, *v.p))
		}
	}
	return "sets " + strings.Join(parts, ", ")
}

func newFleetScalingCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "scaling",
		Short: "Show the scaler: policies, period and warmup after time_scale, the last decision and each policy's verdict",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := g.client().Scaling(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), s)
			}
			w := cmd.OutOrStdout()
			state := "on"
			if s.Suspended {
				state = "suspended (haven fleet resume)"
			}
			fmt.Fprintf(w, "scaling %s; capacity min %d, desired %d, max %d\n", state, s.Min, s.Desired, s.Max)
			fmt.Fprintf(w, "metric period %s, instance warmup %s (time_scale %g); CPU accounting %v\n",
				time.Duration(s.PeriodMS)*time.Millisecond, time.Duration(s.WarmupMS)*time.Millisecond, s.TimeScale, s.CPUAccounting)
			for _, p := range s.Policies {
				fmt.Fprintf(w, "  policy %s: %s at %g\n", p.Name, p.Metric, p.Target)
			}
			if s.AvgCPU != nil {
				fmt.Fprintf(w, "average CPU now: %.1f %%\n", *s.AvgCPU)
			}
			if s.LastReason != "" {
				fmt.Fprintf(w, "last decision: %s\n", s.LastReason)
			}
			for _, v := range s.Verdicts {
				fmt.Fprintf(w, "  %s: %s (%s)\n", v.Policy, v.Kind, v.Reason)
			}
			for _, n := range s.Notes {
				fmt.Fprintf(w, "note: %s\n", n)
			}
			if s.LastError != "" {
				fmt.Fprintf(w, "last error (%d in a row): %s\n", s.Failures, s.LastError)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	return cmd
}

func newFleetSuspendCmd(g *globals, suspend bool) *cobra.Command {
	use, short := "resume", "Resume scaling: target tracking and scheduled actions act again (runs missed meanwhile are skipped)"
	if suspend {
		use, short = "suspend", "Suspend scaling: capacity stays as it is until resumed or set by hand (AWS: suspend-processes)"
	}
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := g.client().SetScalingSuspended(cmd.Context(), suspend); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "scaling %s\n", map[bool]string{true: "suspended", false: "resumed"}[suspend])
			return nil
		},
	}
}
