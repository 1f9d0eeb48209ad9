"""The tape's vocabulary: node kinds, table columns and step status codes.

A model is lowered to a tape (see :mod:`fastbp.engine.planner`), a handful of
small integer and float tables that the compiled interpreter reads:

``nodes`` : int64 (n_nodes, NODE_COLS), one row per node in topological order;
``fattrs`` : float64 (n_nodes, FLOAT_COLS), the node's float attributes;
``operands`` : int64 (n_operands, OPERAND_COLS), the inputs of every node, a
    node's inputs being rows ``ARG0 .. ARG0 + N_ARGS - 1``;
``values`` : int64 (n_values, VALUE_COLS), where each value lives: its
    per-sample offset and width in the activation arena (or, for int ids, in the
    id arena), so that at batch size m value v is the (m, width) block starting
    at ``m * offset``; its gradient has the same place in the gradient arena.  A
    sequence value of a batch whose samples have R steps in all is the (R, width)
    block there, packed (sample i's step t is row ``starts[i] + t``), room being
    kept for m times the longest T the workspace was sized for;
``tables`` : int64 (n_tables, TABLE_COLS), the embedding tables (kept out of the
    flat parameter buffer) and their row-gradient workspaces.
"""

# -- node kinds -------------------------------------------------------------------
INPUT = 0      # loads a model input into its slot
DENSE = 1      # a = f(x W + b)
DROPOUT = 2    # inverted dropout
WINDOW = 3     # gathers the 2w+1 rows of an embedding table per window
CONCAT = 4     # side by side, in operand order
ADD = 5        # elementwise sum of equal-width values
CUSTOM = 6     # a user's NumPy layer: only the per-layer path runs it
RECURRENT = 7  # an RNN, LSTM or GRU over a sequence (one direction)

KIND_NAMES = {INPUT: "input", DENSE: "dense", DROPOUT: "dropout", WINDOW: "window",
              CONCAT: "concatenate", ADD: "add", CUSTOM: "custom", RECURRENT: "recurrent"}

# -- nodes: int columns -----------------------------------------------------------
KIND = 0        # one of the kinds above
ARG0 = 1        # first operand row
N_ARGS = 2      # number of operands
OUT = 3         # the value written
W_OFF = 4       # DENSE: offset of W (n_in, n_out) in the flat buffer; b follows it;
                # RECURRENT: offset of W, then U, b (and GRU's b_rec)
ACT = 5         # DENSE, RECURRENT (RNN cells): activation code
TABLE = 6       # WINDOW: embedding table row
KEY = 7         # DROPOUT: the node's share of the dropout key
PARAM_ACC = 8   # 1: another node (a later call of the same layer) writes these
                # parameters' gradients first in the backward pass, so this one adds
DATA_COL = 9    # INPUT: the widths of the non-sequence inputs before it in its data array
SEQ_COL = 10    # INPUT: the per-step widths of the sequence inputs before it there (its
                # first column is DATA_COL + steps * SEQ_COL, steps: the data's T)
CELL = 11       # RECURRENT: the cell (kernels.recurrent RNN, LSTM, GRU)
REVERSE = 12    # RECURRENT: 1 reads each sequence from its last real step back
LAST = 13       # RECURRENT: 1 outputs the state after the last step read (not a sequence)
TRUNCATE = 14   # RECURRENT: truncated BPTT, k steps back (0: all)
CACHE_OFF = 15  # RECURRENT: per-(sample, step) offset of its cache in the cache arena
NODE_COLS = 16

# -- nodes: float columns ----------------------------------------------------------
SLOPE = 0       # DENSE: leaky-ReLU slope
P = 1           # DROPOUT: rate
FLOAT_COLS = 2

# -- operands ------------------------------------------------------------------------
VALUE = 0       # the value read
GRAD_ACC = 1    # 1: the value's gradient already holds another reader's share: add
OPERAND_COLS = 2

# -- values ----------------------------------------------------------------------------
OFFSET = 0      # per-sample offset in its arena
WIDTH = 1       # per-sample width
IS_IDS = 2      # 1: int64 ids in the id arena
NEEDS_GRAD = 3  # 1: some parameter lies upstream, so a gradient flows into it
SEQ = 4         # 1: a sequence, (batch * T, width) at a batch of T steps
VALUE_COLS = 5

# -- embedding tables ------------------------------------------------------------------
E_OFF = 0       # offset of the (vocab, dim) table in the flat embedding buffer
VOCAB = 1
DIM = 2
STATE_OFF = 3   # offset of its (k, vocab, dim) lazy optimizer state (trainable tables)
PADDING = 4     # the padding id, or -1
TRAINABLE = 5
ROW_CAP = 6     # positions its row-gradient workspace holds (set with the workspaces)
ROWS_OFF = 7    # its touched-row list, then its id hash table, in the rows arena
HASH_SIZE = 8   # length of that hash table (a power of two)
GRAD_OFF = 9    # its row gradients (ROW_CAP, dim) in the row-gradient arena
POSITIONS = 10  # ids per sample that look rows up in it (over every node using it)
TABLE_COLS = 11

# -- step status -------------------------------------------------------------------------
OK = 0
NONFINITE_LOSS = 1      # nothing was updated
NONFINITE_GRADIENT = 2  # nothing was updated
NONFINITE_UPDATE = 3    # the elements whose update overflowed kept their values

STATUS_TEXT = {NONFINITE_LOSS: "non-finite loss", NONFINITE_GRADIENT: "non-finite gradient",
               NONFINITE_UPDATE: "an update that would make weights non-finite"}
