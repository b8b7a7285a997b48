"""The Kubernetes service platform, over the official client's REST transport.

``client`` speaks to the API server and turns its errors into the project's; ``mapping`` reads
its objects as the tool's types; ``rollout`` follows rollouts by watch; ``logs`` reads and
follows pod logs; ``platform`` is the ServicePlatform built from them. The ``kubernetes``
package (the SDK, a different package from this one) is imported at the first request.
"""

from travellr_ops.adapters.kubernetes.platform import KubernetesPlatform

__all__ = ["KubernetesPlatform"]
