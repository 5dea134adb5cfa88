"""The authgate operator: watches OAuthPolicies, compiles one snapshot, pushes it to every
auth-service replica, and reports the truth in each policy's status.

Handlers are thin (`main.py`); what is worth testing is pure (`reconcile.py`); what talks
to the cluster (`kube.py`) and to the replicas (`replicas.py`) is tested against real ones.
"""
