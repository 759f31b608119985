package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
)

func newPortForwardCmd(e *env) *cobra.Command {
	var timeout time.Duration
	var output string
	cmd := &cobra.Command{
		Use:   "port-forward NAME [LOCAL_PORT]",
		Short: "Forward a local port to the instance and print the connection URI for it",
		Long: `Forward 127.0.0.1:LOCAL_PORT (a free port if omitted) to the instance's server until interrupted,
and print the connection details for that address. A suspended instance is resumed first.`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			local := 0
			if len(args) == 2 {
				p, err := strconv.Atoi(args[1])
				if err != nil || p < 0 || p > 65535 {
					return fmt.Errorf("local port %q: want a number from 0 to 65535", args[1])
				}
				local = p
			}
			if err := checkOutputFormat(output); err != nil {
				return err
			}
			if err := e.connectCluster(); err != nil {
				return err
			}
			ctx := cmd.Context()
			inst, err := e.readyInstance(ctx, args[0], timeout)
			if err != nil {
				return err
			}
			conn, err := e.connection(ctx, inst)
			if err != nil {
				return err
			}
			fw, err := e.forward(ctx, inst, local, conn.Port)
			if err != nil {
				return err
			}
			defer fw.close()
			fmt.Fprintf(e.Err, "forwarding 127.0.0.1:%d -> %s/%s-0:%d (Ctrl-C to stop)\n", fw.local, inst.Namespace, inst.Name, conn.Port)
			if err := writeConnection(e.Out, output, conn.at("127.0.0.1", fw.local)); err != nil {
				return err
			}
			select {
			case <-ctx.Done():
				return nil
			case err := <-fw.done:
				if err != nil {
					return fmt.Errorf("port-forward to %s ended: %w", inst.Name, err)
				}
				return nil
			}
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "how long to wait for the instance to be Ready")
	cmd.Flags().StringVarP(&output, "output", "o", "uri", "what to print: env|github-env|json|yaml|uri")
	return cmd
}

// forwarding is a port-forward to an instance's pod, running in the background.
type forwarding struct {
	local int
	stop  chan struct{}
	done  chan error
}

func (f *forwarding) close() { close(f.stop) }

// forward opens a port-forward through the API server, which reaches the pod wherever this
// machine is: the one path that needs neither the Service's nor the pod's address to be routable.
func (e *env) forward(ctx context.Context, inst *myaasv1.DatabaseInstance, local, remote int) (*forwarding, error) {
	pod, err := e.instancePod(ctx, inst)
	if err != nil {
		return nil, err
	}
	if pod.Status.Phase != corev1.PodRunning {
		return nil, fmt.Errorf("pod %s is %s, not Running", pod.Name, pod.Status.Phase)
	}
	transport, upgrader, err := spdy.RoundTripperFor(e.restConfig)
	if err != nil {
		return nil, fmt.Errorf("port-forward to %s: %w", pod.Name, err)
	}
	req := e.cs.CoreV1().RESTClient().Post().Resource("pods").Namespace(pod.Namespace).Name(pod.Name).SubResource("portforward")
	dialer := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, http.MethodPost, req.URL())
	f := &forwarding{stop: make(chan struct{}), done: make(chan error, 1)}
	ready := make(chan struct{})
	pf, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, []string{fmt.Sprintf("%d:%d", local, remote)}, f.stop, ready, io.Discard, e.Err)
	if err != nil {
		return nil, fmt.Errorf("port-forward to %s: %w", pod.Name, err)
	}
	go func() { f.done <- pf.ForwardPorts() }()
	select {
	case <-ready:
	case err := <-f.done:
		return nil, fmt.Errorf("port-forward to %s: %w", pod.Name, err)
	case <-ctx.Done():
		close(f.stop)
		return nil, ctx.Err()
	}
	ports, err := pf.GetPorts()
	if err != nil || len(ports) != 1 {
		close(f.stop)
		return nil, fmt.Errorf("port-forward to %s: no local port: %w", pod.Name, err)
	}
	f.local = int(ports[0].Local)
	return f, nil
}
