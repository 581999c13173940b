package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/haven-platform/haven/internal/api"
	"github.com/haven-platform/haven/internal/api/routes"
	"github.com/haven-platform/haven/internal/release"
	"github.com/haven-platform/haven/internal/termsafe"
)

func newDeployCmd(g *globals) *cobra.Command {
	var req release.DeployRequest
	var env []string
	var wait, asJSON bool
	cmd := &cobra.Command{
		Use:   "deploy",
		Short: "Create a launch template version and roll it out: launch before terminate, checkpoints with a bake, health gates, automatic rollback",
		Long: `Create a new launch template version from the current one with the given changes, and roll
it out across the fleet as an Auto Scaling Group instance refresh does: new instances come up
before old ones go (fleet.instance_refresh.max_healthy_percentage), at each checkpoint the
rollout bakes while the load balancer compares the new version's 5xx rate and p99 with the
old one's, and any failed gate rolls the fleet back to the last good version.

  haven deploy --artifact ./bin/courses          # a new build, same arguments
  haven deploy --env FEATURE_X=on                # same build, another environment
  haven deploy status | history | rollback [VERSION]`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if req.Artifact != "" {
				abs, err := filepath.Abs(req.Artifact)
				if err != nil {
					return err
				}
				req.Artifact = abs
			}
			if len(req.Command) > 0 && !strings.Contains(req.Command[0], "${") && !filepath.IsAbs(req.Command[0]) {
				p, err := exec.LookPath(req.Command[0])
				if err != nil {
					return fmt.Errorf("--command %s: %w; give a path, or ${ARTIFACT} with --artifact", req.Command[0], err)
				}
				if req.Command[0], err = filepath.Abs(p); err != nil {
					return err
				}
			}
			for _, kv := range env {
				k, v, ok := strings.Cut(kv, "=")
				if !ok || k == "" {
					return fmt.Errorf("--env %q: want KEY=VALUE (an empty VALUE removes KEY)", kv)
				}
				if req.Env == nil {
					req.Env = map[string]string{}
				}
				req.Env[k] = v
			}
			var r release.Rollout
			if err := g.client().Do(cmd.Context(), http.MethodPost, "/v1/deploys", req, &r); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "rollout %s: %s → %s, checkpoints %v, bake %s\n", r.ID, r.From, r.Target, r.Checkpoints, r.Bake)
			if !wait {
				if asJSON {
					return writeJSON(cmd.OutOrStdout(), r)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s started; haven deploy status follows it\n", r.ID)
				return nil
			}
			return followRollout(cmd.Context(), g.client(), r.ID, cmd.OutOrStdout(), cmd.ErrOrStderr(), asJSON)
		},
	}
	cmd.Flags().StringSliceVar(&req.Command, "command", nil, "the new command, comma-separated (default: the current one; with --artifact, the artifact in place of its program)")
	cmd.Flags().StringVar(&req.Artifact, "artifact", "", "an app build to deploy: copied into the release store and run as ${ARTIFACT}")
	cmd.Flags().StringArrayVar(&env, "env", nil, "KEY=VALUE over the current version's environment (repeatable; KEY= removes it)")
	cmd.Flags().BoolVar(&req.AllowBreaking, "allow-breaking", false, "roll out a version whose migrations break the version still serving")
	cmd.Flags().BoolVar(&wait, "wait", true, "follow the rollout until it succeeds or rolls back (exit code 2 unless it succeeded)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the rollout record as JSON")

	status := &cobra.Command{
		Use:   "status",
		Short: "The current version, the active or last rollout, and the instances per version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var st release.Status
			if err := g.client().Do(cmd.Context(), http.MethodGet, "/v1/deploys/status", nil, &st); err != nil {
				return err
			}
			if statusJSON {
				return writeJSON(cmd.OutOrStdout(), st)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "current version: %s (%s) %s\n", st.Current.ID, short(st.Current.Hash), strings.Join(st.Current.Command, " "))
			fmt.Fprintf(w, "instances: %v\n", st.Instances)
			if r := st.Active; r != nil {
				fmt.Fprintln(w, "active:")
				printRollout(w, *r)
			} else if r := st.Last; r != nil {
				fmt.Fprintln(w, "last:")
				printRollout(w, *r)
			}
			return nil
		},
	}
	status.Flags().BoolVar(&statusJSON, "json", false, "print as JSON")
	var histJSON bool
	history := &cobra.Command{
		Use:   "history",
		Short: "Every rollout and version, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var h routes.DeployHistory
			if err := g.client().Do(cmd.Context(), http.MethodGet, "/v1/deploys", nil, &h); err != nil {
				return err
			}
			if histJSON {
				return writeJSON(cmd.OutOrStdout(), h)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintln(w, "ROLLOUT  FROM  TO    REQUESTED  PHASE         STARTED               GATE")
			for _, r := range h.Rollouts {
				fmt.Fprintf(w, "%-8s %-5s %-5s %-10s %-13s %-21s %s\n", r.ID, r.From, r.Target, r.Requested, r.Phase, r.StartedAt.Local().Format(time.DateTime), r.Gate)
			}
			fmt.Fprintln(w, "\nVERSION  HASH          ORIGIN  CREATED              COMMAND")
			for _, v := range h.Versions {
				fmt.Fprintf(w, "%-8s %-13s %-7s %-20s %s\n", v.ID, short(v.Hash), v.Origin, v.CreatedAt.Local().Format(time.DateTime), strings.Join(v.Command, " "))
			}
			return nil
		},
	}
	history.Flags().BoolVar(&histJSON, "json", false, "print as JSON")
	var rbJSON, rbWait bool
	rollback := &cobra.Command{
		Use:   "rollback [VERSION]",
		Short: "Roll back to VERSION (default: the one the current version replaced), rolling and gated; during a rollout, turn it around",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var in routes.RollbackRequest
			if len(args) == 1 {
				in.To = args[0]
			}
			var r release.Rollout
			if err := g.client().Do(cmd.Context(), http.MethodPost, "/v1/deploys/rollback", in, &r); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "rollout %s: rolling back to %s\n", r.ID, cmp(r))
			if !rbWait {
				return writeJSON(cmd.OutOrStdout(), r)
			}
			return followRollout(cmd.Context(), g.client(), r.ID, cmd.OutOrStdout(), cmd.ErrOrStderr(), rbJSON)
		},
	}
	rollback.Flags().BoolVar(&rbJSON, "json", false, "print the rollout record as JSON")
	rollback.Flags().BoolVar(&rbWait, "wait", true, "follow the rollout until it ends")
	cmd.AddCommand(status, history, rollback)
	return cmd
}

var statusJSON bool

// cmp names the version a rollback goes to.
func cmp(r release.Rollout) string {
	if r.Requested == "rollback" {
		return r.Target
	}
	return r.From
}

func short(h string) string {
	h = strings.TrimPrefix(h, "sha256:")
	if len(h) > 12 {
		h = h[:12]
	}
	return h
}

func printRollout(w io.Writer, r release.Rollout) {
	fmt.Fprintf(w, "  %s (%s): %s → %s, %s, step %d of %v", r.ID, r.Requested, r.From, r.Target, r.Phase, min(r.Step+1, len(r.Checkpoints)), r.Checkpoints)
	if r.RolledBackFrom != "" {
		fmt.Fprintf(w, ", rolled back from %s", r.RolledBackFrom)
	}
	fmt.Fprintln(w)
	if r.Gate != "" {
		fmt.Fprintf(w, "  %s gate failed: %s\n", r.Gate, r.Reason)
	}
	if r.AllowedBreaking != "" {
		fmt.Fprintf(w, "  allowed breaking migrations (--allow-breaking): %s\n", termsafe.String(r.AllowedBreaking))
	}
	for _, at := range r.Resumed {
		fmt.Fprintf(w, "  resumed after a daemon restart at %s\n", at.Local().Format(time.DateTime))
	}
	fmt.Fprintf(w, "  new: %d requests, %d 5xx, p99 %s; old: %d requests, %d 5xx, p99 %s\n",
		r.New.Requests, r.New.Errors5xx, r.New.P99, r.Old.Requests, r.Old.Errors5xx, r.Old.P99)
}

// followRollout prints the rollout's events until it ends; exit code 2
// unless it succeeded.
func followRollout(ctx context.Context, c *api.Client, id string, out, diag io.Writer, asJSON bool) error {
	var after int64
	for {
		evs, err := c.Events(ctx, api.EventQuery{After: after, Component: "deploy"})
		if err == nil {
			for _, e := range evs {
				after = max(after, e.Seq)
				if e.Subject == id {
					fmt.Fprintf(diag, "%s %s\n", e.Time.Local().Format("15:04:05.000"), e.Message)
				}
			}
		}
		var h routes.DeployHistory
		if err := c.Do(ctx, http.MethodGet, "/v1/deploys", nil, &h); err != nil {
			return err
		}
		for _, r := range h.Rollouts {
			if r.ID != id || !r.Phase.Final() {
				continue
			}
			if asJSON {
				if err := writeJSON(out, r); err != nil {
					return err
				}
			} else {
				printRollout(out, r)
			}
			if r.Phase != release.PhaseSucceeded {
				return errorf(2, "rollout %s %s", r.ID, r.Phase)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}
