"""Names of the sample sites and plates of :class:`~pyro_pots.model.PotsVAE`.

These names are public API: guides, handlers, conditioning and
:class:`pyro.infer.Predictive` all refer to sites by name, so every module imports them
from here rather than spelling them out.
"""

#: y in R^K, the encoder's raw logits (one per pot, open or closed).
LOGITS = "logits"
#: w in the simplex, the relaxed one-hot routing weights (exactly 0 on closed pots).
ROUTE = "route"
#: z of shape (K, N, d): one Normal latent per pot; the pot axis is the ``channels`` plate
#: (dim -2, outside the ``data`` plate at dim -1), so every per-row site has batch shape
#: (N,). ``Predictive`` keeps the plates' dims: it returns ``z`` as (S, K, N, d) and the
#: per-row sites with a size-1 dim in the channels slot, ``obs`` as (S, 1, N, D) and
#: ``logits``, ``route`` and ``responsibilities`` as (S, 1, N, K)
#: (:func:`pyro_pots.ppc.replicates` drops it).
Z = "z"
#: the observed data x.
OBS = "obs"
#: deterministic softmax of the logits over the open pots (diagnostics, usage).
RESPONSIBILITIES = "responsibilities"

#: plate over datapoints.
DATA_PLATE = "data"
#: plate over pots ("channels"); every site inside it is masked to the open pots.
CHANNELS_PLATE = "channels"
