package main

import (
	"errors"
	"fmt"
	"path"
	"time"

	helmclient "github.com/k3s-io/helm-controller/pkg/generated/clientset/versioned"
	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"

	"github.com/perchedge/perch/installer/apps"
	"github.com/perchedge/perch/installer/host"
	"github.com/perchedge/perch/installer/node"
)

// newControllerCmd is the process every server's perch-controller service
// runs (apps.RunController). Not for people.
func newControllerCmd(s *streams) *cobra.Command {
	var root, dataDir, name string
	cmd := &cobra.Command{
		Use:    "controller",
		Short:  "Keep the pipeline's workers on the cluster's Ready GPU nodes (a server's service)",
		Hidden: true,
		Args:   noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if name == "" {
				return &usageError{errors.New(`--name: is empty; give this server's node name`)}
			}
			if !path.IsAbs(dataDir) {
				return &usageError{fmt.Errorf("--data-dir: %q is not an absolute path", dataDir)}
			}
			h, err := host.Open(root)
			if err != nil {
				return err
			}
			// the admin kubeconfig k3s writes on every server
			rc, err := (&node.Node{Host: h}).RESTConfig()
			if err != nil {
				return fmt.Errorf("read k3s's kubeconfig: %w (this runs on servers perch installed)", err)
			}
			rc.Timeout = 10 * time.Second
			kube, err := kubernetes.NewForConfig(rc)
			if err != nil {
				return err
			}
			helm, err := helmclient.NewForConfig(rc)
			if err != nil {
				return err
			}
			logf := func(format string, args ...any) {
				fmt.Fprintf(s.out, "%s %s\n", time.Now().UTC().Format(time.RFC3339), fmt.Sprintf(format, args...))
			}
			return apps.RunController(cmd.Context(), apps.ControllerOptions{
				Host: h, DataDir: dataDir, Identity: name, Kube: kube, Helm: helm, Logf: logf,
			})
		},
	}
	addRoot(cmd.Flags(), &root, "root the server was installed under")
	cmd.Flags().StringVar(&dataDir, "data-dir", "/var/lib/rancher/k3s", "k3s's data dir (k3s.dataDir)")
	cmd.Flags().StringVar(&name, "name", "", "this server's node name, its identity in the leader Lease")
	return cmd
}
