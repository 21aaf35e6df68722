package main

import (
	"fmt"
	"net"

	"github.com/spf13/cobra"

	"github.com/perchedge/perch/airgap/registry"
)

func newRegistryServeCmd(s *streams) *cobra.Command {
	var c registry.Config
	var insecure bool
	cmd := &cobra.Command{
		Use:   "serve --dir DIR [--addr HOST:PORT] [--tls-cert FILE --tls-key FILE] [--htpasswd FILE]",
		Short: "Run the appliance's image registry until SIGTERM or Ctrl-C",
		Long: "Serve the registry API (distribution's registry, filesystem storage under DIR)\n" +
			"until SIGTERM or Ctrl-C, then finish downloads in flight (up to 30 s). The same\n" +
			"address answers /healthz (200 while DIR is readable) and /metrics (Prometheus),\n" +
			"both without credentials. A blob or manifest whose bytes on disk no longer\n" +
			"match its digest is refused, never served, and logged with what to delete.\n" +
			"perch install runs this as its own service, with TLS and htpasswd it generates.",
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if c.Dir == "" {
				return &usageError{fmt.Errorf("--dir DIR is required: where the registry keeps its images (perch install uses /var/lib/perch/registry)")}
			}
			if (c.TLSCert == "") != (c.TLSKey == "") {
				return &usageError{fmt.Errorf("--tls-cert and --tls-key go together: give both, or neither for plain HTTP")}
			}
			hostPart, _, err := net.SplitHostPort(c.Addr)
			if err != nil {
				return &usageError{fmt.Errorf("--addr %q: want HOST:PORT, such as %s", c.Addr, registry.DefaultAddr)}
			}
			if !loopback(hostPart) && (c.TLSCert == "" || c.Htpasswd == "") && !insecure {
				return &usageError{fmt.Errorf("--addr %s is reachable from other machines, and without --tls-cert/--tls-key and --htpasswd anyone there could read and push images in clear text: give all three (perch install does), listen on 127.0.0.1, or pass --insecure", c.Addr)}
			}
			if c.Htpasswd != "" && c.TLSCert == "" {
				fmt.Fprintln(s.err, "warning: --htpasswd without --tls-cert: passwords cross the network in clear text")
			}
			c.Log = s.err
			return registry.Serve(cmd.Context(), c)
		},
	}
	f := cmd.Flags()
	f.StringVar(&c.Dir, "dir", "", "storage directory (created if missing)")
	f.StringVar(&c.Addr, "addr", registry.DefaultAddr, "HOST:PORT to listen on")
	f.StringVar(&c.TLSCert, "tls-cert", "", "server certificate, PEM (with --tls-key)")
	f.StringVar(&c.TLSKey, "tls-key", "", "server certificate's private key, PEM")
	f.StringVar(&c.Htpasswd, "htpasswd", "", "bcrypt htpasswd file; every request then needs one of its users")
	f.BoolVar(&insecure, "insecure", false, "allow a non-loopback --addr without TLS and htpasswd")
	return cmd
}

// loopback says whether a listen host is reachable from this machine only.
// An empty host, as in ":5000", is every interface.
func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
