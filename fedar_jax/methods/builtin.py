"""The built-in methods and their parameters, as data for the registry (no JAX).

`DECLARED` is read by registry.py in order: the order of the parameters is the
order of the MethodParams leaves, of the RunConfig fields of each kind and of
the traced sweep lists (sweep.csv columns), so a new parameter goes at the end
of its kind. Implementations are named 'module:attribute', imported on first use.
"""
from fedar_jax.methods.declarations import INT32, KindParam, Method, Param

_UNIT = dict(low=0.0, high=1.0)  # [0, 1)
_POSITIVE = dict(low=0.0, low_closed=False)  # > 0
_NONNEG = dict(low=0.0)  # >= 0

# --- Server optimizers: factories (MethodParams) -> optax.GradientTransformation. ---
SERVER_LR = Param('server_learning_rate', 1.0,
                  'Server learning rate (fedavg with 1: plain FedAvg).', **_POSITIVE,
                  sweep='server_learning_rates',
                  sweep_help='Server learning rates to sweep; default --server_learning_rate.')
SERVER_MOMENTUM = Param('server_momentum', 0.9, 'fedavgm server momentum, in [0, 1).', **_UNIT,
                        sweep='server_momentums', sweep_help='fedavgm server momentums to '
                        'sweep; default --server_momentum.')
SERVER_BETA1 = Param('server_beta1', 0.9, 'fedadam/fedyogi/fedadagrad first-moment decay, in '
                     '[0, 1).', **_UNIT, sweep='server_beta1s',
                     sweep_help='Server first-moment decays to sweep; default --server_beta1.')
SERVER_BETA2 = Param('server_beta2', 0.99, 'fedadam/fedyogi second-moment decay, in [0, 1).',
                     **_UNIT, sweep='server_beta2s',
                     sweep_help='Server second-moment decays to sweep; default --server_beta2.')
SERVER_TAU = Param('server_tau', 1e-3, 'fedadam/fedyogi/fedadagrad adaptivity tau (> 0).',
                   **_POSITIVE, sweep='server_taus',
                   sweep_help='Server adaptivity taus to sweep; default --server_tau.')
_ADAPTIVE = (SERVER_LR, SERVER_BETA1, SERVER_BETA2, SERVER_TAU)
_REDDI = 'Reddi et al. 2021'

# --- Aggregators' parameters. ---
TRIM = Param('trim_fraction', 0.1, 'trimmed_mean: fraction cut at each end, in [0, 0.5).',
             low=0.0, high=0.5, sweep='trim_fractions',
             sweep_help='trimmed_mean fractions to sweep; default --trim_fraction.')
BYZANTINE = Param('byzantine_clients', 0, 'krum/multi_krum: assumed attackers f (2f + 2 < '
                  'clients per round).', low=0, dtype=INT32, sweep='byzantine_client_counts',
                  sweep_help='Krum f values to sweep; default --byzantine_clients.')
CLIP = Param('clip_norm', 1.0, 'norm_clip: L2 bound on each client update (> 0).', **_POSITIVE,
             sweep='clip_norms', sweep_help='norm_clip bounds to sweep; default --clip_norm.')

# --- Local training and the losses' parameters. ---
PROX_MU = Param('prox_mu', 0.0, 'FedProx proximal weight mu (>= 0; 0 = off).', **_NONNEG,
                sweep='prox_mus', sweep_help='FedProx mus to sweep; default --prox_mu.')
FOCAL_GAMMA = Param('focal_gamma', 2.0, 'focal: focusing gamma (>= 0; 0 = CE).', **_NONNEG,
                    sweep='focal_gammas',
                    sweep_help='focal gammas to sweep; default --focal_gamma.')
CB_BETA = Param('cb_beta', 0.999, 'class_balanced: beta in [0, 1) (0 = CE).', **_UNIT,
                sweep='cb_betas', sweep_help='class_balanced betas to sweep; default --cb_beta.')
LA_TAU = Param('la_tau', 1.0, 'logit_adjusted: tau (>= 0; 0 = CE).', **_NONNEG, sweep='la_taus',
               sweep_help='logit_adjusted taus to sweep; default --la_tau.')
FEDRS_ALPHA = Param('fedrs_alpha', 0.5, 'fedrs: logit scale of absent classes, in [0, 1] '
                    '(1 = CE).', low=0.0, high=1.0, high_closed=True, sweep='fedrs_alphas',
                    sweep_help='fedrs alphas to sweep; default --fedrs_alpha.')
FEDLC_TAU = Param('fedlc_tau', 1.0, 'fedlc: calibration tau (>= 0; 0 = CE).', **_NONNEG,
                  sweep='fedlc_taus', sweep_help='fedlc taus to sweep; default --fedlc_tau.')

# --- Attacks (data/partition.py and the round implement them): their parameter. ---
ATTACK_SCALE = Param('attack_scale', 10.0, 'scale attackers: factor on their update (model '
                     'replacement), > 0.', **_POSITIVE, sweep='attack_scales',
                     sweep_help='scale attackers\' factors to sweep; default --attack_scale.')

# --- Central differential privacy (privacy.py): its parameters. ---
DP_CLIP = Param('dp_clip_norm', 1.0, 'DP: L2 bound on each sampled client\'s update (the '
                'starting bound with --dp=adaptive), > 0.', **_POSITIVE, sweep='dp_clip_norms',
                sweep_help='DP clip norms to sweep; default --dp_clip_norm.')
DP_NOISE = Param('dp_noise_multiplier', 1.0, 'DP: noise multiplier sigma; the summed clipped '
                 'updates get N(0, (sigma * clip)^2) noise, >= 0.', **_NONNEG,
                 sweep='dp_noise_multipliers',
                 sweep_help='DP noise multipliers to sweep; default --dp_noise_multiplier.')
DP_QUANTILE = Param('dp_target_quantile', 0.5, 'DP adaptive: the quantile of the update norms '
                    'the clip norm follows, in [0, 1].', low=0.0, high=1.0, high_closed=True,
                    sweep='dp_target_quantiles',
                    sweep_help='DP adaptive target quantiles to sweep; default '
                    '--dp_target_quantile.')
DP_CLIP_LR = Param('dp_clip_learning_rate', 0.2, 'DP adaptive: learning rate of the geometric '
                   'clip-norm update, >= 0.', **_NONNEG, sweep='dp_clip_learning_rates',
                   sweep_help='DP adaptive clip learning rates to sweep; default '
                   '--dp_clip_learning_rate.')
DP_COUNT_STDDEV = Param('dp_clip_count_stddev', 1.0, 'DP adaptive: standard deviation of the '
                        'noise on the count of unclipped clients, > 0 (sets the effective '
                        'noise multiplier).', **_POSITIVE, sweep='dp_clip_count_stddevs',
                        sweep_help='DP adaptive count noise deviations to sweep; default '
                        '--dp_clip_count_stddev.')

DECLARED = (
    # Server optimizers: (MethodParams) -> optax.GradientTransformation.
    Method('server_optimizer', 'fedavg', 'fedar_jax.server:fedavg', (SERVER_LR,),
           'SGD on the pseudo-gradient; learning rate 1 is plain FedAvg, bit for bit',
           'McMahan et al. 2017'),
    Method('server_optimizer', 'fedavgm', 'fedar_jax.server:fedavgm',
           (SERVER_LR, SERVER_MOMENTUM), 'SGD with heavy-ball momentum', 'Hsu et al. 2019'),
    Method('server_optimizer', 'fedadam', 'fedar_jax.server:fedadam', _ADAPTIVE,
           'Algorithm 2, no bias correction, v starts at tau²', _REDDI),
    Method('server_optimizer', 'fedyogi', 'fedar_jax.server:fedyogi', _ADAPTIVE,
           'as fedadam, with Yogi\'s additive second moment', _REDDI),
    Method('server_optimizer', 'fedadagrad', 'fedar_jax.server:fedadagrad', _ADAPTIVE,
           'as fedadam, with the summed second moment (beta2 unused)', _REDDI),
    # Aggregators: (x f32[P, D], use bool[P], w f32[P], g f32[D], MethodParams) -> f32[D];
    # mean is the streaming weighted sum of server.py (no client axis kept).
    Method('aggregator', 'mean', None, (), 'FedAvg, weighted by real samples',
           'McMahan et al. 2017'),
    Method('aggregator', 'median', 'fedar_jax.aggregate:coordinate_median', (),
           'coordinate-wise median (unweighted)', 'Yin et al. 2018'),
    Method('aggregator', 'trimmed_mean', 'fedar_jax.aggregate:trimmed_mean', (TRIM,),
           'coordinate-wise mean, floor(fraction·n) cut at each end (unweighted)',
           'Yin et al. 2018'),
    Method('aggregator', 'krum', 'fedar_jax.aggregate:krum', (BYZANTINE,),
           'the client with the lowest Krum score (2f + 2 < clients per round)',
           'Blanchard et al. 2017'),
    Method('aggregator', 'multi_krum', 'fedar_jax.aggregate:multi_krum', (BYZANTINE,),
           'mean of the n − f clients with the lowest Krum scores', 'El Mhamdi et al. 2018'),
    Method('aggregator', 'geometric_median', 'fedar_jax.aggregate:geometric_median', (),
           'weighted geometric median, 100 smoothed Weiszfeld steps (ν = 1e-6)',
           'Pillutla et al. 2022 (RFA)'),
    Method('aggregator', 'norm_clip', 'fedar_jax.aggregate:norm_clip', (CLIP,),
           'weighted mean of the updates (client − global), each clipped to this L2 norm',
           'Sun et al. 2019'),
    # Client optimizers: (learning_rate) -> optax.GradientTransformation.
    Method('client_optimizer', 'adam', 'optax:adam', (), 'Adam (the paper\'s)',
           'Kingma & Ba 2015'),
    Method('client_optimizer', 'sgd', 'optax:sgd', (), 'plain SGD'),
    Method('client_optimizer', 'momentum', 'fedar_jax.client:momentum_sgd', (),
           'SGD with heavy-ball momentum 0.9'),
    KindParam('client_optimizer', PROX_MU, 'loss + mu/2·‖w − w_global‖² with any optimizer',
              'FedProx, Li et al. 2020'),
    # Client losses: (logits f32[B, K], y i32[B], mask bool[B], counts f32[K], MethodParams)
    # -> f32 scalar.
    Method('loss', 'ce', 'fedar_jax.losses:ce_loss', (), 'softmax cross-entropy'),
    Method('loss', 'focal', 'fedar_jax.losses:focal_loss', (FOCAL_GAMMA,),
           '−(1 − p_y)^γ log p_y', 'Lin et al. 2017'),
    Method('loss', 'class_balanced', 'fedar_jax.losses:class_balanced_loss', (CB_BETA,),
           'CE weighted by (1−β)/(1−β^n_y)', 'Cui et al. 2019'),
    Method('loss', 'balanced_softmax', 'fedar_jax.losses:balanced_softmax_loss', (),
           'CE of logits + log n_k', 'Ren et al. 2020'),
    Method('loss', 'logit_adjusted', 'fedar_jax.losses:logit_adjusted_loss', (LA_TAU,),
           'CE of logits + τ log(n_k/n)', 'Menon et al. 2021'),
    Method('loss', 'fedrs', 'fedar_jax.losses:fedrs_loss', (FEDRS_ALPHA,),
           'CE of logits, those of absent classes × α', 'Li & Zhan, KDD 2021'),
    Method('loss', 'fedlc', 'fedar_jax.losses:fedlc_loss', (FEDLC_TAU,),
           'CE of logits − τ n_k^(−1/4)', 'Zhang et al., ICML 2022'),
    KindParam('attack', ATTACK_SCALE, '--attack=scale: update × scale (model replacement)',
              'Bagdasaryan et al. 2020'),
    # Central DP (privacy.py): the round clips, sums and noises the client updates.
    Method('privacy', 'none', None, (), 'no differential privacy: the aggregator as chosen'),
    Method('privacy', 'fixed', 'fedar_jax.privacy:fixed', (DP_CLIP, DP_NOISE),
           'DP-FedAvg: updates clipped to a fixed L2 norm, Gaussian noise on their sum',
           'McMahan et al. 2018'),
    Method('privacy', 'adaptive', 'fedar_jax.privacy:adaptive',
           (DP_CLIP, DP_NOISE, DP_QUANTILE, DP_CLIP_LR, DP_COUNT_STDDEV),
           'DP-FedAvg with the clip norm following a quantile of the update norms',
           'Andrew et al. 2021'),
    # Models: builders (cfg, data, resampler) -> train.Model.
    Method('model', 'mlp', 'fedar_jax.train:build_mlp', (),
           'MLP on rows (images flattened); the paper\'s Dense(10, relu) by default'),
    Method('model', 'cnn', 'fedar_jax.train:build_cnn', (), 'conv encoder + MLP head, images'),
    # Data sources: loaders (cfg) -> (Pool, label ids); synthetic makes its clients itself.
    Method('dataset', 'synthetic', None, (), 'Gaussian classes, imbalance partition'),
    Method('dataset', 'latent_csv', 'fedar_jax.data.load:load_latent_csv', (),
           'encoded features, .csv or .npz'),
    Method('dataset', 'fer2013', 'fedar_jax.data.load:load_fer2013', (), 'FER2013 CSV'),
    Method('dataset', 'image_folder', 'fedar_jax.data.load:load_image_folder', (),
           'one sub-folder of images per class'),
    Method('dataset', 'tfds:NAME', 'fedar_jax.data.load:load_tfds', (),
           'a prepared TensorFlow Datasets data set'),
)
