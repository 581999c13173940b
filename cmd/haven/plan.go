package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/haven-platform/haven/internal/api"
	"github.com/haven-platform/haven/internal/plan"
	"github.com/haven-platform/haven/internal/spec"
)

// specRequest reads and validates the spec file (errors name the line and
// field) and returns it for the daemon.
func specRequest(file string) (api.SpecRequest, spec.Spec, error) {
	s, err := spec.LoadFile(file)
	if err != nil {
		return api.SpecRequest{}, s, err
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return api.SpecRequest{}, s, fmt.Errorf("read %s: %w", file, err)
	}
	return api.SpecRequest{File: file, Spec: string(data)}, s, nil
}

func newPlanCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "plan",
		Short: "Show what haven apply would change in the running region: in place (~), replaced (-/+), refused (!)",
		Long: `Compare the spec file with the running region's recorded spec and live
state, and show each change with how the region takes it: in place (~),
a restart of a component or a rolling replacement of the fleet (-/+), or
refused (!) with the reason and the way out. Nothing is changed.

Exits 0 when the plan can be applied (or is empty), 1 when it has a
refused change.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req, _, err := specRequest(g.specFile)
			if err != nil {
				return err
			}
			p, err := g.client().Plan(cmd.Context(), req)
			if err != nil {
				return err
			}
			if asJSON {
				if err := writeJSON(cmd.OutOrStdout(), p); err != nil {
					return err
				}
			} else {
				fmt.Fprint(cmd.OutOrStdout(), p.Text())
			}
			if p.Summary.Refused > 0 {
				return errorf(1, "plan has %d refused change(s): %s", p.Summary.Refused, refusedFields(p))
			}
			return nil
		},
	}
	addSpecFlag(cmd, g)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the plan as JSON")
	return cmd
}

func refusedFields(p plan.Plan) string {
	var f []string
	for _, c := range p.Refused() {
		f = append(f, c.Field)
	}
	return strings.Join(f, ", ")
}

func newApplyCmd(g *globals) *cobra.Command {
	var auto, asJSON bool
	cmd := &cobra.Command{
		Use:   "apply",
		Short: "Change the running region to the spec file: in place where possible, rolling where not, never half-applied",
		Long: `Show the plan, ask for confirmation (unless --auto-approve), and have the
daemon carry it out: in-place changes first, then a rolling replacement of
the fleet (launch before terminate, one instance at a time). Each change is
recorded in <state-dir>/spec/apply.json with the spec's hash; the recorded
spec becomes the new one only when every change is made. A change that
fails is rolled back. A plan with a refused change is refused whole, and
the region is untouched.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req, _, err := specRequest(g.specFile)
			if err != nil {
				return err
			}
			c := g.client()
			p, err := c.Plan(cmd.Context(), req)
			if err != nil {
				return err
			}
			if !asJSON {
				fmt.Fprint(cmd.OutOrStdout(), p.Text())
			}
			if err := p.RefusedError(); err != nil {
				if asJSON {
					_ = writeJSON(cmd.OutOrStdout(), api.ApplyResult{Plan: p, Outcome: "refused", Error: err.Error(), Log: []string{}})
				}
				return err
			}
			if p.Empty() {
				if asJSON {
					return writeJSON(cmd.OutOrStdout(), api.ApplyResult{Plan: p, Outcome: "no changes", Log: []string{}})
				}
				return nil
			}
			if !auto && !confirm(cmd.InOrStdin(), cmd.ErrOrStderr()) {
				return fmt.Errorf("apply cancelled: nothing was changed")
			}
			res, err := applyWithProgress(cmd.Context(), c, req, cmd.ErrOrStderr())
			if asJSON {
				if res.Outcome == "" && err != nil {
					res.Outcome, res.Error = "failed", err.Error()
				}
				if jerr := writeJSON(cmd.OutOrStdout(), res); jerr != nil {
					return jerr
				}
			}
			if err != nil {
				return err
			}
			if !asJSON {
				fmt.Fprintf(cmd.OutOrStdout(), "\nApply complete: the region runs spec %s (%d changes).\n", res.Spec.Hash, len(res.Plan.Changes))
			}
			return nil
		},
	}
	addSpecFlag(cmd, g)
	cmd.Flags().BoolVar(&auto, "auto-approve", false, "apply without asking")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}

// confirm asks for "yes", as terraform apply does.
func confirm(in io.Reader, out io.Writer) bool {
	fmt.Fprint(out, "\nDo you want to apply these changes? Only 'yes' will be accepted: ")
	line, _ := bufio.NewReader(in).ReadString('\n')
	return strings.TrimSpace(line) == "yes"
}

// applyWithProgress runs the apply and prints the daemon's apply events
// as they happen.
func applyWithProgress(ctx context.Context, c *api.Client, req api.SpecRequest, w io.Writer) (api.ApplyResult, error) {
	done := make(chan struct{})
	var after int64
	if evs, err := c.Events(ctx, api.EventQuery{Component: "region"}); err == nil && len(evs) > 0 {
		after = evs[len(evs)-1].Seq
	}
	printed := make(chan struct{})
	go func() {
		defer close(printed)
		follow := func() {
			evs, err := c.Events(ctx, api.EventQuery{After: after, Component: "region"})
			if err != nil {
				return
			}
			for _, e := range evs {
				after = e.Seq
				if strings.HasPrefix(e.Message, "apply: ") {
					fmt.Fprintln(w, "  "+e.Message)
				}
			}
		}
		for {
			select {
			case <-done:
				follow()
				return
			case <-time.After(500 * time.Millisecond):
				follow()
			}
		}
	}()
	res, err := c.Apply(ctx, req)
	close(done)
	<-printed
	return res, err
}

// drift compares the spec file with the recorded spec: nil when the file
// cannot be read (status works without one).
func drift(ctx context.Context, c *api.Client, file string, recorded string) *api.Drift {
	req, s, err := specRequest(file)
	if err != nil || recorded == "" {
		return nil
	}
	d := &api.Drift{File: file, Hash: plan.Hash(s)}
	if d.Hash == recorded {
		return d
	}
	if p, err := c.Plan(ctx, req); err == nil {
		d.Changes = len(p.Changes)
	}
	return d
}

// specLine is the status's line about the recorded spec and the file.
func specLine(st api.SpecState) string {
	if st.Hash == "" {
		return ""
	}
	line := fmt.Sprintf("spec %s (recorded by %s at %s)", st.Hash, st.By, st.RecordedAt.Local().Format("2006-01-02 15:04:05"))
	if a := st.LastApply; a != nil {
		out := a.Outcome
		if out == "" {
			out = fmt.Sprintf("in progress, %d/%d changes made", a.Applied, a.Changes)
		}
		line += fmt.Sprintf("; last apply %s → %s: %s", a.From, a.To, out)
	}
	if d := st.Drift; d != nil {
		if d.Hash == st.Hash {
			line += fmt.Sprintf("; %s matches", d.File)
		} else {
			line += fmt.Sprintf("; %s changed since apply: %d changes; run `haven plan`", d.File, d.Changes)
		}
	}
	return line + "\n"
}
