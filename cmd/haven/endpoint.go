package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/haven-platform/haven/internal/pgha/endpoint"
)

// newEndpointCmd is the database endpoint's proxy process: the daemon
// starts `haven endpoint serve` with the listening socket as descriptor 3.
func newEndpointCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "endpoint", Short: "The database endpoint's proxy process (started by the daemon)", Hidden: true}
	var (
		dir, target string
		fd, count   int
		epoch       uint64
	)
	serve := &cobra.Command{
		Use:   "serve",
		Short: "Forward the endpoint's connections to the primary the daemon names, until SIGTERM",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				return errors.New("endpoint serve: --dir is required")
			}
			f := os.NewFile(uintptr(fd), "listener")
			if f == nil {
				return errors.New("endpoint serve: the listener descriptor is not open")
			}
			var more []*os.File
			for i := 1; i < count; i++ {
				m := os.NewFile(uintptr(fd+i), "listener")
				if m == nil {
					return fmt.Errorf("endpoint serve: listener descriptor %d is not open", fd+i)
				}
				more = append(more, m)
			}
			logger := slog.New(slog.NewJSONHandler(cmd.ErrOrStderr(), nil))
			return endpoint.ServeProcess(cmd.Context(), endpoint.ServeOptions{Dir: dir, Listener: f, More: more, Epoch: epoch, Target: target, Logger: logger})
		},
	}
	serve.Flags().StringVar(&dir, "dir", "", "the endpoint's directory: control socket ep-<pid>.sock")
	serve.Flags().IntVar(&fd, "listener-fd", 3, "the inherited listening socket")
	serve.Flags().IntVar(&count, "listeners", 1, "how many listening sockets are inherited, from --listener-fd on (more than one while the endpoint moves)")
	serve.Flags().Uint64Var(&epoch, "epoch", 0, "the epoch to start with")
	serve.Flags().StringVar(&target, "target", "", "the primary to forward to from the start (host:port; empty: none)")
	cmd.AddCommand(serve)
	return cmd
}
