"""The authgate operator: watches OAuthPolicies, compiles one snapshot, pushes it to every
auth-service replica, and reports the truth in each policy's status.

Handlers are thin (`handlers.py`: a Kopf index, the controller in `memo`); what is worth
testing is pure (`cluster.py`, `plan.py`, `status.py`); what talks to the cluster
(`kube.py`) and to the replicas (`replicas.py`) is tested against real ones; `controller.py`
runs the rounds in between.
"""
