package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
)

type connectOptions struct {
	timeout   time.Duration
	inCluster bool
	local     bool
}

func newConnectCmd(e *env) *cobra.Command {
	o := &connectOptions{}
	cmd := &cobra.Command{
		Use:   "connect NAME [-- CLIENT_ARGS...]",
		Short: "Open the engine's client (mariadb/mysql/psql) against the instance",
		Long: `Open the engine's command-line client against the instance, logged in with its credentials.

With a local client (mariadb or mysql; psql for PostgreSQL), the client runs here and reaches the server at the Service's
address if this machine can, else at the pod's address, else through a port-forward. Without one
(or with --in-cluster) it runs in a short-lived pod with the template's engine image, attached to
this terminal, and the pod is deleted afterwards. Arguments after -- go to the client; its exit
status is this command's. A suspended instance is resumed first.`,
		Example: `  kubectl myaas connect pr-123
  kubectl myaas connect pr-123 -- -e "SELECT COUNT(*) FROM shop.orders"
  kubectl myaas connect pr-123 < migration.sql`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if dash := cmd.ArgsLenAtDash(); dash > 1 || dash == -1 && len(args) > 1 {
				return fmt.Errorf("one instance name, then client arguments after --")
			}
			if o.inCluster && o.local {
				return fmt.Errorf("--in-cluster and --local exclude each other")
			}
			if err := e.connectCluster(); err != nil {
				return err
			}
			return e.connect(cmd.Context(), args[0], args[1:], o)
		},
	}
	cmd.Flags().DurationVar(&o.timeout, "timeout", 5*time.Minute, "how long to wait for the instance to be Ready")
	cmd.Flags().BoolVar(&o.inCluster, "in-cluster", false, "run the client in a pod even when one is installed here")
	cmd.Flags().BoolVar(&o.local, "local", false, "run the local client, never a pod")
	return cmd
}

func (e *env) connect(ctx context.Context, name string, clientArgs []string, o *connectOptions) error {
	inst, err := e.readyInstance(ctx, name, o.timeout)
	if err != nil {
		return err
	}
	conn, err := e.connection(ctx, inst)
	if err != nil {
		return err
	}
	// The template names the engine and the image the revision was imported with; an instance
	// outlives its template's deletion only briefly, so a missing one is not fatal for local use.
	t, terr := e.getTemplateAt(ctx, myaasv1.TemplateReference{Name: inst.Spec.TemplateRef.Name, Namespace: inst.TemplateNamespace()})
	engine := myaasv1.EngineMariaDB
	if terr == nil {
		engine = t.Spec.Engine.Type
	}
	cl := clientFor(engine)
	bin := ""
	if !o.inCluster {
		bin = cl.local()
		if bin == "" && o.local {
			return fmt.Errorf("no %s client on PATH (install it, or drop --local to run one in the cluster)", strings.Join(cl.binaries, " or "))
		}
	}
	if bin == "" {
		if terr != nil {
			return terr
		}
		image, err := clientImage(t, inst)
		if err != nil {
			return err
		}
		return e.connectInPod(ctx, inst, cl, image, clientArgs)
	}

	target, closeFn, err := e.reach(ctx, inst, conn)
	if err != nil {
		return err
	}
	defer closeFn()
	return runLocalClient(ctx, cl, bin, target, clientArgs, e.streams)
}

// reach finds an address of the server this machine can connect to: the Service (in-cluster
// runners, VPNs), else the pod (clusters whose pod network is routed here), else a port-forward
// through the API server, which always works where the API server does.
func (e *env) reach(ctx context.Context, inst *myaasv1.DatabaseInstance, conn connection) (connection, func(), error) {
	noop := func() {}
	if canDial(ctx, net.JoinHostPort(conn.Host, strconv.Itoa(conn.Port))) {
		return conn, noop, nil
	}
	if pod, err := e.instancePod(ctx, inst); err == nil && pod.Status.PodIP != "" &&
		canDial(ctx, net.JoinHostPort(pod.Status.PodIP, strconv.Itoa(conn.Port))) {
		return conn.at(pod.Status.PodIP, conn.Port), noop, nil
	}
	fw, err := e.forward(ctx, inst, 0, conn.Port)
	if err != nil {
		return connection{}, nil, fmt.Errorf("neither %s:%d nor the pod is reachable from here, and %w", conn.Host, conn.Port, err)
	}
	return conn.at("127.0.0.1", fw.local), fw.close, nil
}

// dialTimeout is short: an unroutable address (a Service IP outside the cluster) never answers,
// and the next way in is tried instead.
const dialTimeout = 700 * time.Millisecond

func canDial(ctx context.Context, addr string) bool {
	d := net.Dialer{Timeout: dialTimeout}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func runLocalClient(ctx context.Context, cl dbClient, bin string, c connection, extra []string, s streams) error {
	cmd := exec.CommandContext(ctx, bin, append(cl.args(c), extra...)...)
	cmd.Env = append(os.Environ(), cl.env(c)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = s.In, s.Out, s.Err
	err := cmd.Run()
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		return exitError{code: exitErr.ExitCode()}
	}
	if err != nil {
		return fmt.Errorf("run %s: %w", bin, err)
	}
	return nil
}

// clientImage is the image the instance's revision was imported with: its client matches the
// server, and the node has most likely pulled it already.
func clientImage(t *myaasv1.DatabaseTemplate, inst *myaasv1.DatabaseInstance) (string, error) {
	for _, r := range t.Status.Revisions {
		if r.Revision == inst.Status.Revision && r.Server != nil && r.Server.Image != "" {
			return r.Server.Image, nil
		}
	}
	if t.Spec.Engine.Image != "" {
		return t.Spec.Engine.Image, nil
	}
	return "", fmt.Errorf("template %s records no image for revision %d: run the client locally (--local)", t.Name, inst.Status.Revision)
}

func clientPod(inst *myaasv1.DatabaseInstance, cl dbClient, image, secret string, args []string, tty bool) *corev1.Pod {
	fromSecret := func(name, key string) corev1.EnvVar {
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: secret}, Key: key}}}
	}
	var env []corev1.EnvVar
	for _, v := range cl.podEnv {
		env = append(env, fromSecret(v[0], v[1]))
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: inst.Name + "-client-",
			Namespace:    inst.Namespace,
			// Not the instance label: the instance's Service selects pods by it.
			Labels: map[string]string{LabelCreatedBy: createdByPlugin, "myaas.io/client-of": inst.Name},
		},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			// A session left behind by a killed terminal does not run forever.
			ActiveDeadlineSeconds:         ptr.To[int64](12 * 3600),
			TerminationGracePeriodSeconds: ptr.To[int64](0),
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot:   ptr.To(true),
				RunAsUser:      ptr.To[int64](999), // mysql and postgres in the engines' official images
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			Containers: []corev1.Container{{
				Name:            "client",
				Image:           image,
				ImagePullPolicy: corev1.PullIfNotPresent,
				Command:         append([]string{"sh", "-c", cl.podScript, "sh"}, args...),
				Env:             env,
				VolumeMounts:    []corev1.VolumeMount{{Name: "tls", MountPath: "/etc/myaas/tls", ReadOnly: true}},
				Stdin:           true,
				StdinOnce:       true,
				TTY:             tty,
				SecurityContext: &corev1.SecurityContext{
					AllowPrivilegeEscalation: ptr.To(false),
					Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				},
			}},
			// Optional: the Secret of an instance started before it had a certificate has no ca.crt.
			Volumes: []corev1.Volume{{Name: "tls", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
				SecretName: secret, Optional: ptr.To(true), Items: []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}},
			}}}},
		},
	}
}

// connectInPod runs the client in the cluster, as `kubectl run -i --rm` does: create the pod,
// attach to it, and delete it however the session ends.
func (e *env) connectInPod(ctx context.Context, inst *myaasv1.DatabaseInstance, cl dbClient, image string, args []string) error {
	in, isFile := e.In.(*os.File)
	tty := isFile && term.IsTerminal(int(in.Fd()))
	if out, ok := e.Out.(*os.File); !ok || !term.IsTerminal(int(out.Fd())) {
		tty = false
	}
	secret := inst.Status.SecretName
	if secret == "" {
		secret = inst.Name + "-credentials"
	}
	pod := clientPod(inst, cl, image, secret, args, tty)
	if err := e.c.Create(ctx, pod); err != nil {
		return apiError(err, "create client pod")
	}
	defer func() {
		// The session's context may be cancelled (Ctrl-C): the pod goes anyway.
		del, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = e.c.Delete(del, pod, client.GracePeriodSeconds(0))
	}()
	if err := e.waitPodRunning(ctx, pod, 2*time.Minute); err != nil {
		return err
	}

	req := e.cs.CoreV1().RESTClient().Post().Resource("pods").Namespace(pod.Namespace).Name(pod.Name).SubResource("attach").
		VersionedParams(&corev1.PodAttachOptions{Container: "client", Stdin: true, Stdout: true, Stderr: !tty, TTY: tty}, clientgoscheme.ParameterCodec)
	executor, err := remotecommand.NewSPDYExecutor(e.restConfig, "POST", req.URL())
	if err != nil {
		return fmt.Errorf("attach to %s: %w", pod.Name, err)
	}
	stdin := io.MultiReader(strings.NewReader("\n"), e.In)
	if tty {
		state, err := term.MakeRaw(int(in.Fd()))
		if err == nil {
			defer func() { _ = term.Restore(int(in.Fd()), state) }()
		}
	}
	opts := remotecommand.StreamOptions{Stdin: stdin, Stdout: e.Out, Tty: tty}
	if !tty {
		opts.Stderr = e.Err
	}
	if err := executor.StreamWithContext(ctx, opts); err != nil && ctx.Err() == nil {
		return fmt.Errorf("attach to %s: %w", pod.Name, err)
	}
	code, err := e.waitPodExit(ctx, pod, 30*time.Second)
	if err != nil {
		return err
	}
	if code != 0 {
		return exitError{code: code}
	}
	return nil
}

func (e *env) waitPodRunning(ctx context.Context, pod *corev1.Pod, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		if err := e.c.Get(ctx, client.ObjectKeyFromObject(pod), pod); err != nil && ctx.Err() == nil {
			return apiError(err, "get client pod "+pod.Name)
		}
		for _, cs := range pod.Status.ContainerStatuses {
			switch {
			case cs.State.Running != nil:
				return nil
			case cs.State.Terminated != nil:
				return fmt.Errorf("client pod %s ended before the session started: %s %s", pod.Name, cs.State.Terminated.Reason, cs.State.Terminated.Message)
			case cs.State.Waiting != nil && isStuck(cs.State.Waiting.Reason):
				return fmt.Errorf("client pod %s cannot start: %s: %s", pod.Name, cs.State.Waiting.Reason, cs.State.Waiting.Message)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("client pod %s not running after %s (phase %s)", pod.Name, timeout, pod.Status.Phase)
		case <-time.After(pollInterval):
		}
	}
}

func isStuck(reason string) bool {
	switch reason {
	case "ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError", "CreateContainerError":
		return true
	}
	return false
}

func (e *env) waitPodExit(ctx context.Context, pod *corev1.Pod, timeout time.Duration) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		if err := e.c.Get(ctx, client.ObjectKeyFromObject(pod), pod); err != nil && ctx.Err() == nil {
			return 0, apiError(err, "get client pod "+pod.Name)
		}
		for _, cs := range pod.Status.ContainerStatuses {
			if t := cs.State.Terminated; t != nil {
				return int(t.ExitCode), nil
			}
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("client pod %s still running after the session ended", pod.Name)
		case <-time.After(pollInterval):
		}
	}
}
