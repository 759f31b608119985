package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	myaasv1 "github.com/myaas/myaas/api/v1alpha1"
)

// apiError makes an API error readable: what was being done, to what, and what to check.
func apiError(err error, what string) error {
	switch {
	case err == nil:
		return nil
	case apierrors.IsForbidden(err):
		return fmt.Errorf("%s: permission denied (ask for RBAC on myaas.io resources in this namespace): %w", what, err)
	case apierrors.IsUnauthorized(err):
		return fmt.Errorf("%s: not logged in to the cluster (check --kubeconfig/--context): %w", what, err)
	case meta.IsNoMatchError(err) || apierrors.IsNotFound(err) && isCRDMissing(err):
		return fmt.Errorf("%s: the myaas CRDs are not installed in this cluster: %w", what, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

func isCRDMissing(err error) bool {
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		return false
	}
	d := status.Status().Details
	// A missing object names itself; a missing resource type does not.
	return d == nil || d.Name == ""
}

func (e *env) getInstance(ctx context.Context, name string) (*myaasv1.DatabaseInstance, error) {
	inst := &myaasv1.DatabaseInstance{}
	return inst, e.getNamed(ctx, name, inst, "instance", "kubectl myaas list")
}

func (e *env) getTemplate(ctx context.Context, name string) (*myaasv1.DatabaseTemplate, error) {
	t := &myaasv1.DatabaseTemplate{}
	return t, e.getNamed(ctx, name, t, "template", "kubectl get databasetemplates")
}

// getTemplateAt reads the template a reference names, in another namespace if it says so.
func (e *env) getTemplateAt(ctx context.Context, ref myaasv1.TemplateReference) (*myaasv1.DatabaseTemplate, error) {
	if ref.Namespace == "" || ref.Namespace == e.namespace {
		return e.getTemplate(ctx, ref.Name)
	}
	t := &myaasv1.DatabaseTemplate{}
	err := e.c.Get(ctx, client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}, t)
	if apierrors.IsNotFound(err) && !isCRDMissing(err) {
		return nil, fmt.Errorf("template %q not found in namespace %q (kubectl get databasetemplates -n %s)", ref.Name, ref.Namespace, ref.Namespace)
	}
	return t, apiError(err, "get template "+ref.Namespace+"/"+ref.Name)
}

// getNamed reads an object of the namespace; a missing one is named with the command that lists
// what there is.
func (e *env) getNamed(ctx context.Context, name string, obj client.Object, kind, listCmd string) error {
	err := e.c.Get(ctx, client.ObjectKey{Namespace: e.namespace, Name: name}, obj)
	if apierrors.IsNotFound(err) && !isCRDMissing(err) {
		return fmt.Errorf("%s %q not found in namespace %q (%s -n %s)", kind, name, e.namespace, listCmd, e.namespace)
	}
	return apiError(err, "get "+kind+" "+name)
}

// isReady is the same test as `kubectl wait --for=condition=Ready`, on a status that describes
// the current spec.
func isReady(inst *myaasv1.DatabaseInstance) bool {
	c := meta.FindStatusCondition(inst.Status.Conditions, myaasv1.ConditionReady)
	return c != nil && c.Status == "True" && inst.Status.ObservedGeneration == inst.Generation && !inst.Spec.Suspend
}

// readySummary is the last word of the Ready condition, for messages on timeout and failure.
func readySummary(inst *myaasv1.DatabaseInstance) string {
	c := meta.FindStatusCondition(inst.Status.Conditions, myaasv1.ConditionReady)
	if c == nil {
		return fmt.Sprintf("phase %q, no Ready condition yet (is the operator running?)", inst.Status.Phase)
	}
	return fmt.Sprintf("Ready=%s, reason %s: %s", c.Status, c.Reason, c.Message)
}

// waitInstance polls the instance until done says so, and on timeout names the instance's last
// Ready reason and message, which say what it is waiting for.
func (e *env) waitInstance(ctx context.Context, name string, timeout time.Duration, done func(*myaasv1.DatabaseInstance) bool) (*myaasv1.DatabaseInstance, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last *myaasv1.DatabaseInstance
	for {
		inst := &myaasv1.DatabaseInstance{}
		err := e.c.Get(ctx, client.ObjectKey{Namespace: e.namespace, Name: name}, inst)
		switch {
		case err == nil:
			last = inst
			if done(inst) {
				return inst, nil
			}
			if inst.DeletionTimestamp != nil {
				return nil, fmt.Errorf("instance %s is being deleted (expired or deleted by someone else)", name)
			}
		case apierrors.IsNotFound(err):
			return nil, fmt.Errorf("instance %s was deleted while waiting for it", name)
		case ctx.Err() == nil:
			return nil, apiError(err, "get instance "+name)
		}
		select {
		case <-ctx.Done():
			if last == nil {
				return nil, fmt.Errorf("timed out after %s waiting for instance %s", timeout, name)
			}
			return nil, fmt.Errorf("timed out after %s waiting for instance %s: %s", timeout, name, readySummary(last))
		case <-time.After(pollInterval):
		}
	}
}

// resume clears spec.suspend, so that commands that need a running server can be used on a
// suspended instance without a separate step.
func (e *env) resume(ctx context.Context, inst *myaasv1.DatabaseInstance) error {
	if !inst.Spec.Suspend {
		return nil
	}
	fmt.Fprintf(e.Err, "resuming suspended instance %s\n", inst.Name)
	patch := client.RawPatch(types.MergePatchType, []byte(`{"spec":{"suspend":false}}`))
	return apiError(e.c.Patch(ctx, inst, patch), "resume instance "+inst.Name)
}

// readyInstance is the instance running and Ready, resumed first if it was suspended.
func (e *env) readyInstance(ctx context.Context, name string, timeout time.Duration) (*myaasv1.DatabaseInstance, error) {
	inst, err := e.getInstance(ctx, name)
	if err != nil {
		return nil, err
	}
	if err := e.resume(ctx, inst); err != nil {
		return nil, err
	}
	return e.waitInstance(ctx, name, timeout, isReady)
}

// connection reads the instance's credentials Secret.
func (e *env) connection(ctx context.Context, inst *myaasv1.DatabaseInstance) (connection, error) {
	name := inst.Status.SecretName
	if name == "" {
		name = inst.Name + "-credentials"
	}
	s := &corev1.Secret{}
	if err := e.c.Get(ctx, client.ObjectKey{Namespace: inst.Namespace, Name: name}, s); err != nil {
		return connection{}, apiError(err, "read credentials Secret "+name)
	}
	return connectionFromSecret(inst.Name, s.Data)
}

// instancePod is the pod serving the instance: its StatefulSet's, or its claimed pool member's.
func (e *env) instancePod(ctx context.Context, inst *myaasv1.DatabaseInstance) (*corev1.Pod, error) {
	pod := &corev1.Pod{}
	if err := e.c.Get(ctx, client.ObjectKey{Namespace: inst.Namespace, Name: inst.ServerName() + "-0"}, pod); err != nil {
		return nil, apiError(err, "get the pod of instance "+inst.Name)
	}
	return pod, nil
}
