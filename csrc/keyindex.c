/* Revisioned key index: a B+tree of per-key revision histories (see keyindex.h). */
#include "keyindex.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define NODE_CAP 64   /* entries per leaf, children per inner node */
#define MAX_HEIGHT 12 /* 64^12 keys: never reached */
#define TOMB_BIT ((int64_t)1 << 62)
#define SUB_MASK (TOMB_BIT - 1)

/* One revision of a key; a tombstone has TOMB_BIT set in sub. */
struct rev {
    int64_t main;
    int64_t sub;
};

/* A generation covers revs[start .. next generation's start); the version of revs[i]
 * is base + i, which stays true while puts are appended and shifts on compaction. */
struct gen {
    int64_t created;
    int64_t base;
    uint32_t start;
    uint32_t unused;
};

/* One key: header, then key bytes padded to 8, gens[ngen], revs[cap]. */
struct entry {
    uint32_t key_len;
    uint32_t nrev;
    uint32_t cap;
    uint32_t ngen;
    unsigned char data[];
};

/* Searching a node: all its keys share their first cpl bytes (the common prefix of its
 * first and last key), and win[i] caches the 8 bytes of key i after that prefix
 * (big-endian, zero padded, which orders like the bytes). Keys such as
 * "/registry/pods/..." share long prefixes, so a plain cached key prefix would tie and
 * every comparison would load the entry; windows after the node's own common prefix
 * decide almost every comparison from the node alone. */
struct leaf {
    uint32_t n;
    uint32_t cpl;
    struct leaf *next;
    uint64_t win[NODE_CAP];
    struct entry *ent[NODE_CAP];
};

/* Child i holds keys in [sep[i-1], sep[i]); a separator points to an entry of the
 * subtree on its right, so it is updated whenever that entry moves (realloc). */
struct inner {
    uint32_t n; /* children */
    uint32_t cpl; /* of the separators */
    struct inner *next; /* links one level while rebuilding after a compaction */
    uint64_t win[NODE_CAP - 1];
    struct entry *sep[NODE_CAP - 1];
    void *child[NODE_CAP];
};

struct ki_index {
    void *root;
    int height; /* inner levels above the leaves */
    int broken;
    struct leaf *first;
    int64_t nkeys, nrevs, bytes;
    int64_t *nums;
    size_t nums_cap;
    char *keys;
    size_t keys_cap;
};

struct key {
    const unsigned char *b;
    size_t len;
};

struct path {
    struct inner *node[MAX_HEIGHT];
    int idx[MAX_HEIGHT];
    struct leaf *leaf;
    int pos;
    int found;
};

/* ---- entries ---------------------------------------------------------------------- */

static size_t pad8(size_t n) { return (n + 7) & ~(size_t)7; }

static struct gen *gens_of(const struct entry *e)
{
    return (struct gen *)(e->data + pad8(e->key_len));
}

static struct rev *revs_of(const struct entry *e) { return (struct rev *)(gens_of(e) + e->ngen); }

static size_t entry_size(uint32_t key_len, uint32_t ngen, uint32_t cap)
{
    return sizeof(struct entry) + pad8(key_len) + ngen * sizeof(struct gen) +
           cap * sizeof(struct rev);
}

static int is_tomb(const struct rev *r) { return (r->sub & TOMB_BIT) != 0; }

static int rev_newer(int64_t main, int64_t sub, const struct rev *than)
{
    int64_t tsub = than->sub & SUB_MASK;
    return main > than->main || (main == than->main && sub > tsub);
}

static int entry_live(const struct entry *e) { return !is_tomb(&revs_of(e)[e->nrev - 1]); }

/* The generation that holds revs[i]. */
static const struct gen *gen_of(const struct entry *e, uint32_t i)
{
    const struct gen *g = gens_of(e);
    uint32_t k = e->ngen - 1;
    while (g[k].start > i)
        k--;
    return &g[k];
}

/* Index of the newest revision with main <= at_rev, or -1. */
static int64_t rev_at(const struct entry *e, int64_t at_rev)
{
    const struct rev *r = revs_of(e);
    int64_t lo = 0, hi = e->nrev;
    if (r[hi - 1].main <= at_rev)
        return hi - 1;
    while (lo < hi) {
        int64_t mid = (lo + hi) / 2;
        if (r[mid].main <= at_rev)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo - 1;
}

/* Fills out {mod main, mod sub, create, version}; KI_NOT_LIVE when not live. */
static int entry_get(const struct entry *e, int64_t at_rev, int64_t *out)
{
    int64_t i = rev_at(e, at_rev);
    const struct rev *r;
    const struct gen *g;
    if (i < 0)
        return KI_NOT_LIVE;
    r = &revs_of(e)[i];
    if (is_tomb(r))
        return KI_NOT_LIVE;
    g = gen_of(e, (uint32_t)i);
    out[0] = r->main;
    out[1] = r->sub;
    out[2] = g->created;
    out[3] = g->base + i;
    return 0;
}

static struct entry *entry_new(ki_index *t, const struct key *k, int64_t created,
                               int64_t version, int64_t main, int64_t sub)
{
    size_t size = entry_size((uint32_t)k->len, 1, 1);
    struct entry *e = malloc(size);
    if (!e)
        return NULL;
    e->key_len = (uint32_t)k->len;
    e->nrev = 1;
    e->cap = 1;
    e->ngen = 1;
    memcpy(e->data, k->b, k->len);
    gens_of(e)[0] = (struct gen){.created = created, .base = version, .start = 0};
    revs_of(e)[0] = (struct rev){.main = main, .sub = sub};
    t->bytes += (int64_t)size;
    return e;
}

/* Appends a revision, opening generation *g first when g is not NULL. Returns the
 * (possibly moved) entry, or NULL with e unchanged when memory runs out. */
static struct entry *entry_append(ki_index *t, struct entry *e, const struct gen *g,
                                  int64_t main, int64_t sub)
{
    uint32_t ngen = e->ngen + (g ? 1 : 0);
    uint32_t cap = e->cap;
    if (e->nrev == UINT32_MAX || ngen == 0)
        return NULL; /* 2^32 revisions or generations of one key: treated as no memory */
    if (e->nrev == cap) {
        uint64_t grown = cap < 4 ? cap + 1 : (uint64_t)cap + cap / 2;
        cap = grown > UINT32_MAX ? UINT32_MAX : (uint32_t)grown;
    }
    if (cap != e->cap || g) {
        size_t old_size = entry_size(e->key_len, e->ngen, e->cap);
        size_t new_size = entry_size(e->key_len, ngen, cap);
        struct entry *m = realloc(e, new_size);
        if (!m)
            return NULL;
        e = m;
        if (g) {
            /* e->ngen is still the old count: make room for one more generation. */
            struct rev *old_revs = revs_of(e);
            memmove((char *)old_revs + sizeof(struct gen), old_revs,
                    e->nrev * sizeof(struct rev));
            gens_of(e)[e->ngen] = *g;
            e->ngen = ngen;
        }
        e->cap = cap;
        t->bytes += (int64_t)new_size - (int64_t)old_size;
    }
    revs_of(e)[e->nrev++] = (struct rev){.main = main, .sub = sub};
    return e;
}

static void entry_free(ki_index *t, struct entry *e)
{
    t->bytes -= (int64_t)entry_size(e->key_len, e->ngen, e->cap);
    free(e);
}

/* Revisions of e that compaction at at_rev drops: a prefix of its history. */
static uint32_t entry_drop_count(const struct entry *e, int64_t at_rev)
{
    int64_t i = rev_at(e, at_rev);
    if (i < 0)
        return 0;
    return (uint32_t)(is_tomb(&revs_of(e)[i]) ? i + 1 : i);
}

/* Removes the first `drop` revisions and the generations left empty. */
static struct entry *entry_trim(ki_index *t, struct entry *e, uint32_t drop)
{
    struct gen *g = gens_of(e);
    uint32_t first = 0, k;
    size_t old_size = entry_size(e->key_len, e->ngen, e->cap);
    struct rev *old_revs = revs_of(e);
    struct entry *m;
    while (first + 1 < e->ngen && g[first + 1].start <= drop)
        first++;
    for (k = first; k < e->ngen; k++) {
        g[k - first] = g[k];
        g[k - first].start = g[k].start > drop ? g[k].start - drop : 0;
        g[k - first].base += drop;
    }
    e->ngen -= first;
    e->nrev -= drop;
    e->cap = e->nrev;
    memmove(revs_of(e), old_revs + drop, e->nrev * sizeof(struct rev));
    m = realloc(e, entry_size(e->key_len, e->ngen, e->cap));
    if (!m) {
        /* Shrinking cannot really fail; if it does, keep the block, all of it usable. */
        e->cap = (uint32_t)((old_size - entry_size(e->key_len, e->ngen, 0)) / sizeof(struct rev));
        m = e;
    }
    t->bytes += (int64_t)entry_size(m->key_len, m->ngen, m->cap) - (int64_t)old_size;
    return m;
}

/* ---- keys and searching -------------------------------------------------------- */

/* The 8 bytes of b after its first cpl bytes, big-endian and zero padded. */
static uint64_t window_at(const unsigned char *b, size_t len, uint32_t cpl)
{
    unsigned char buf[8] = {0};
    size_t rest = len - cpl;
    uint64_t w;
    if (rest)
        memcpy(buf, b + cpl, rest < 8 ? rest : 8);
    memcpy(&w, buf, 8);
    return __builtin_bswap64(w);
}

static uint64_t entry_window(const struct entry *e, uint32_t cpl)
{
    return window_at(e->data, e->key_len, cpl);
}

static struct key make_key(const char *b, size_t len)
{
    struct key k = {.b = (const unsigned char *)(b ? b : ""), .len = b ? len : 0};
    return k;
}

static int cmp_full(const struct key *k, const struct entry *e)
{
    size_t n = k->len < e->key_len ? k->len : e->key_len;
    int c = n ? memcmp(k->b, e->data, n) : 0;
    if (c)
        return c;
    return (k->len > e->key_len) - (k->len < e->key_len);
}

static uint32_t common_prefix(const struct entry *a, const struct entry *b)
{
    uint32_t n = a->key_len < b->key_len ? a->key_len : b->key_len, i = 0;
    while (i < n && a->data[i] == b->data[i])
        i++;
    return i;
}

/* Recomputes a node's common prefix and windows from its n sorted keys. */
static void refresh(uint64_t *win, struct entry *const *ent, uint32_t n, uint32_t *cpl)
{
    *cpl = n ? common_prefix(ent[0], ent[n - 1]) : 0;
    for (uint32_t i = 0; i < n; i++)
        win[i] = entry_window(ent[i], *cpl);
}

/* Keeps a node's windows right after a key was inserted at pos (n keys now). Only a
 * new first or last key can shorten the common prefix. */
static void inserted(uint64_t *win, struct entry *const *ent, uint32_t n, uint32_t pos,
                     uint32_t *cpl)
{
    if ((pos == 0 || pos == n - 1) && common_prefix(ent[0], ent[n - 1]) != *cpl) {
        refresh(win, ent, n, cpl);
        return;
    }
    win[pos] = entry_window(ent[pos], *cpl);
}

/* Number of the n sorted keys < k (<= k when upper); *equal (if asked) when the key at
 * that position is k. Keys outside the node's common prefix are placed without a search. */
static int bound(const uint64_t *win, struct entry *const *ent, uint32_t n, uint32_t cpl,
                 const struct key *k, int upper, int *equal)
{
    int lo = 0, hi = (int)n, c;
    size_t shared;
    uint64_t kw;
    if (equal)
        *equal = 0;
    if (n == 0)
        return 0;
    shared = k->len < cpl ? k->len : cpl;
    c = shared ? memcmp(k->b, ent[0]->data, shared) : 0;
    if (c)
        return c < 0 ? 0 : (int)n;
    if (k->len < cpl)
        return 0;
    kw = window_at(k->b, k->len, cpl);
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        c = kw != win[mid] ? (kw < win[mid] ? -1 : 1) : cmp_full(k, ent[mid]);
        if (c > 0 || (upper && c == 0))
            lo = mid + 1;
        else
            hi = mid;
    }
    if (equal && lo < (int)n && win[lo] == kw && cmp_full(k, ent[lo]) == 0)
        *equal = 1;
    return lo;
}

static void descend(ki_index *t, const struct key *k, struct path *p)
{
    void *n = t->root;
    for (int lvl = 0; lvl < t->height; lvl++) {
        struct inner *in = n;
        int i = bound(in->win, in->sep, in->n - 1, in->cpl, k, 1, NULL);
        p->node[lvl] = in;
        p->idx[lvl] = i;
        n = in->child[i];
    }
    p->leaf = n;
    p->pos = bound(p->leaf->win, p->leaf->ent, p->leaf->n, p->leaf->cpl, k, 0, &p->found);
}

/* The separator naming the entry at the searched position, if one does: it can only be
 * on the search path, just left of the child taken. */
static struct entry **sep_slot(ki_index *t, struct path *p)
{
    struct entry *e = p->leaf->ent[p->pos];
    for (int lvl = 0; lvl < t->height; lvl++) {
        int i = p->idx[lvl];
        if (i > 0 && p->node[lvl]->sep[i - 1] == e)
            return &p->node[lvl]->sep[i - 1];
    }
    return NULL;
}

/* ---- insertion ----------------------------------------------------------------- */

/* Inserts a new entry at the searched position, splitting full nodes on the way up.
 * Every node a split needs is allocated first, so -ENOMEM leaves the tree as it was. */
static int tree_insert(ki_index *t, struct path *p, struct entry *e)
{
    struct leaf *lf = p->leaf, *right_leaf = NULL;
    struct inner *spare[MAX_HEIGHT + 1];
    int nspare = 0, lvl;
    struct entry *tmp_ent[NODE_CAP + 1];
    struct entry *up_sep;
    void *up_child;
    int m, i;

    if (lf->n < NODE_CAP) {
        memmove(&lf->ent[p->pos + 1], &lf->ent[p->pos], (lf->n - p->pos) * sizeof(lf->ent[0]));
        memmove(&lf->win[p->pos + 1], &lf->win[p->pos], (lf->n - p->pos) * sizeof(lf->win[0]));
        lf->ent[p->pos] = e;
        lf->n++;
        inserted(lf->win, lf->ent, lf->n, (uint32_t)p->pos, &lf->cpl);
        return 0;
    }

    /* Full leaf: count the full inner nodes above it, allocate, then split. */
    lvl = t->height - 1;
    while (lvl >= 0 && p->node[lvl]->n == NODE_CAP)
        lvl--;
    nspare = t->height - 1 - lvl + (lvl < 0 ? 1 : 0);
    if (lvl < 0 && t->height + 1 > MAX_HEIGHT)
        return -ENOMEM;
    right_leaf = malloc(sizeof(*right_leaf));
    if (!right_leaf)
        return -ENOMEM;
    for (i = 0; i < nspare; i++) {
        spare[i] = malloc(sizeof(struct inner));
        if (!spare[i]) {
            while (i-- > 0)
                free(spare[i]);
            free(right_leaf);
            return -ENOMEM;
        }
    }
    t->bytes += (int64_t)sizeof(struct leaf) + nspare * (int64_t)sizeof(struct inner);

    /* Leaf split. Appending at the end leaves a full left node (sequential loads
     * pack leaves); otherwise split in the middle. */
    memcpy(tmp_ent, lf->ent, p->pos * sizeof(tmp_ent[0]));
    tmp_ent[p->pos] = e;
    memcpy(&tmp_ent[p->pos + 1], &lf->ent[p->pos], (NODE_CAP - p->pos) * sizeof(tmp_ent[0]));
    m = p->pos == NODE_CAP ? NODE_CAP : (NODE_CAP + 1) / 2;
    memcpy(lf->ent, tmp_ent, m * sizeof(tmp_ent[0]));
    lf->n = (uint32_t)m;
    right_leaf->n = (uint32_t)(NODE_CAP + 1 - m);
    memcpy(right_leaf->ent, &tmp_ent[m], right_leaf->n * sizeof(tmp_ent[0]));
    refresh(lf->win, lf->ent, lf->n, &lf->cpl);
    refresh(right_leaf->win, right_leaf->ent, right_leaf->n, &right_leaf->cpl);
    right_leaf->next = lf->next;
    lf->next = right_leaf;
    up_sep = tmp_ent[m];
    up_child = right_leaf;

    for (lvl = t->height - 1; lvl >= 0; lvl--) {
        struct inner *in = p->node[lvl], *right;
        int at = p->idx[lvl]; /* separator goes at `at`, child at `at + 1` */
        struct entry *ts[NODE_CAP];
        void *tc[NODE_CAP + 1];
        int nsep = (int)in->n - 1;
        if (in->n < NODE_CAP) {
            memmove(&in->sep[at + 1], &in->sep[at], (nsep - at) * sizeof(in->sep[0]));
            memmove(&in->win[at + 1], &in->win[at], (nsep - at) * sizeof(in->win[0]));
            memmove(&in->child[at + 2], &in->child[at + 1], (in->n - at - 1) * sizeof(void *));
            in->sep[at] = up_sep;
            in->child[at + 1] = up_child;
            in->n++;
            inserted(in->win, in->sep, in->n - 1, (uint32_t)at, &in->cpl);
            return 0;
        }
        memcpy(ts, in->sep, at * sizeof(ts[0]));
        ts[at] = up_sep;
        memcpy(&ts[at + 1], &in->sep[at], (nsep - at) * sizeof(ts[0]));
        memcpy(tc, in->child, (at + 1) * sizeof(void *));
        tc[at + 1] = up_child;
        memcpy(&tc[at + 2], &in->child[at + 1], (NODE_CAP - at - 1) * sizeof(void *));
        /* m children stay left; separator m-1 moves up; the rest go right. */
        m = at + 1 == NODE_CAP ? NODE_CAP : (NODE_CAP + 1) / 2;
        right = spare[--nspare];
        right->next = NULL;
        in->n = (uint32_t)m;
        memcpy(in->child, tc, m * sizeof(void *));
        memcpy(in->sep, ts, (m - 1) * sizeof(ts[0]));
        right->n = (uint32_t)(NODE_CAP + 1 - m);
        memcpy(right->child, &tc[m], right->n * sizeof(void *));
        memcpy(right->sep, &ts[m], (right->n - 1) * sizeof(ts[0]));
        refresh(in->win, in->sep, in->n - 1, &in->cpl);
        refresh(right->win, right->sep, right->n - 1, &right->cpl);
        up_sep = ts[m - 1];
        up_child = right;
    }

    /* The root split: grow the tree by one level. */
    {
        struct inner *root = spare[--nspare];
        root->n = 2;
        root->next = NULL;
        root->child[0] = t->root;
        root->child[1] = up_child;
        root->sep[0] = up_sep;
        refresh(root->win, root->sep, 1, &root->cpl);
        t->root = root;
        t->height++;
    }
    return 0;
}

/* ---- public API ------------------------------------------------------------------ */

int ki_new(ki_index **out)
{
    ki_index *t = calloc(1, sizeof(*t));
    struct leaf *lf = calloc(1, sizeof(*lf));
    if (!t || !lf)
        goto fail;
    t->root = lf;
    t->first = lf;
    t->bytes = sizeof(*t) + sizeof(*lf);
    *out = t;
    return 0;
fail:
    free(lf);
    free(t);
    return -ENOMEM;
}

static void free_inner(void *n, int levels)
{
    struct inner *in = n;
    if (levels == 0)
        return;
    for (uint32_t i = 0; i < in->n; i++)
        free_inner(in->child[i], levels - 1);
    free(in);
}

void ki_free(ki_index *t)
{
    struct leaf *lf, *next;
    if (!t)
        return;
    free_inner(t->root, t->height);
    for (lf = t->first; lf; lf = next) {
        next = lf->next;
        for (uint32_t i = 0; i < lf->n; i++)
            free(lf->ent[i]);
        free(lf);
    }
    free(t->nums);
    free(t->keys);
    free(t);
}

static int check_rev(int64_t main, int64_t sub, size_t key_len)
{
    if (main < 0 || sub < 0 || sub >= TOMB_BIT || key_len > UINT32_MAX)
        return -ERANGE;
    return 0;
}

/* Adds a revision to a found key, opening a generation when g is not NULL. */
static int append_found(ki_index *t, struct path *p, const struct gen *g, int64_t main,
                        int64_t sub)
{
    struct entry *e = p->leaf->ent[p->pos];
    struct entry **sep = sep_slot(t, p);
    struct entry *moved = entry_append(t, e, g, main, sub);
    if (!moved)
        return -ENOMEM;
    p->leaf->ent[p->pos] = moved;
    if (sep)
        *sep = moved;
    t->nrevs++;
    return 0;
}

static int insert_new(ki_index *t, struct path *p, const struct key *k, int64_t created,
                      int64_t version, int64_t main, int64_t sub)
{
    struct entry *e = entry_new(t, k, created, version, main, sub);
    int rc;
    if (!e)
        return -ENOMEM;
    rc = tree_insert(t, p, e);
    if (rc < 0) {
        entry_free(t, e);
        return rc;
    }
    t->nkeys++;
    t->nrevs++;
    return 0;
}

int ki_put(ki_index *t, const char *key, size_t key_len, int64_t main, int64_t sub,
           int64_t *out)
{
    struct key k;
    struct path p;
    struct entry *e;
    const struct rev *last;
    int rc = check_rev(main, sub, key_len);
    if (rc < 0)
        return rc;
    if (t->broken)
        return -EIO;
    k = make_key(key, key_len);
    descend(t, &k, &p);
    out[2] = out[3] = -1;
    if (!p.found) {
        rc = insert_new(t, &p, &k, main, 1, main, sub);
        out[0] = main;
        out[1] = 1;
        return rc;
    }
    e = p.leaf->ent[p.pos];
    last = &revs_of(e)[e->nrev - 1];
    if (!rev_newer(main, sub, last))
        return -EINVAL;
    if (entry_live(e)) {
        const struct gen *g = &gens_of(e)[e->ngen - 1];
        out[0] = g->created;
        out[1] = g->base + e->nrev;
        out[2] = last->main;
        out[3] = last->sub;
        return append_found(t, &p, NULL, main, sub);
    } else {
        struct gen g = {.created = main, .base = 1 - (int64_t)e->nrev, .start = e->nrev};
        out[0] = main;
        out[1] = 1;
        return append_found(t, &p, &g, main, sub);
    }
}

int ki_tombstone(ki_index *t, const char *key, size_t key_len, int64_t main, int64_t sub)
{
    struct key k;
    struct path p;
    struct entry *e;
    int rc = check_rev(main, sub, key_len);
    if (rc < 0)
        return rc;
    if (t->broken)
        return -EIO;
    k = make_key(key, key_len);
    descend(t, &k, &p);
    if (!p.found || !entry_live(e = p.leaf->ent[p.pos]))
        return KI_NOT_LIVE;
    if (!rev_newer(main, sub, &revs_of(e)[e->nrev - 1]))
        return -EINVAL;
    return append_found(t, &p, NULL, main, sub | TOMB_BIT);
}

int ki_get(ki_index *t, const char *key, size_t key_len, int64_t at_rev, int64_t *out)
{
    struct key k;
    struct path p;
    if (t->broken)
        return -EIO;
    k = make_key(key, key_len);
    descend(t, &k, &p);
    if (!p.found)
        return KI_NOT_LIVE;
    return entry_get(p.leaf->ent[p.pos], at_rev, out);
}

int ki_restore(ki_index *t, const char *key, size_t key_len, int64_t main, int64_t sub,
               int64_t create_revision, int64_t version, int tombstone)
{
    struct key k;
    struct path p;
    struct entry *e;
    int rc = check_rev(main, sub, key_len);
    if (rc < 0)
        return rc;
    if (t->broken)
        return -EIO;
    if (!tombstone && (create_revision < 0 || create_revision > main || version < 1))
        return -EINVAL;
    k = make_key(key, key_len);
    descend(t, &k, &p);
    if (!p.found) {
        if (tombstone)
            return -EINVAL;
        return insert_new(t, &p, &k, create_revision, version, main, sub);
    }
    e = p.leaf->ent[p.pos];
    if (!rev_newer(main, sub, &revs_of(e)[e->nrev - 1]))
        return -EINVAL;
    if (tombstone) {
        if (!entry_live(e))
            return -EINVAL;
        return append_found(t, &p, NULL, main, sub | TOMB_BIT);
    }
    if (entry_live(e)) {
        const struct gen *g = &gens_of(e)[e->ngen - 1];
        if (g->created != create_revision || g->base + e->nrev != version)
            return -EINVAL;
        return append_found(t, &p, NULL, main, sub);
    } else {
        struct gen g = {.created = create_revision,
                        .base = version - (int64_t)e->nrev,
                        .start = e->nrev};
        return append_found(t, &p, &g, main, sub);
    }
}

/* ---- restoring from the MVCC store's records ---- */

/* A stored record's fields: those of mvccpb.KeyValue the index needs. */
struct record {
    const char *key;
    size_t key_len;
    int64_t main, sub, create_revision, version, lease;
    int tombstone;
};

/* Reads a base-128 varint at *p (< end); 0 on success, -EINVAL when cut or too long. */
static int read_varint(const unsigned char **p, const unsigned char *end, uint64_t *out)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 64 && *p < end; shift += 7) {
        unsigned char b = *(*p)++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return -EINVAL;
}

static int64_t load_be64(const unsigned char *b)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | b[i];
    return (int64_t)v;
}

/* Parses an LMDB record: the revision key (16 bytes, or 17 ending in 't' for a
 * tombstone) and the KeyValue protobuf (fields 1 key, 2 create_revision, 4 version,
 * 6 lease; others skipped). -EINVAL on anything malformed. */
static int parse_record(const unsigned char *k, size_t klen, const unsigned char *v,
                        size_t vlen, struct record *r)
{
    const unsigned char *p = v, *end = v + vlen;
    memset(r, 0, sizeof(*r));
    if (klen == 17 && k[16] == 't')
        r->tombstone = 1;
    else if (klen != 16)
        return -EINVAL;
    r->main = load_be64(k);
    r->sub = load_be64(k + 8);
    r->key = (const char *)v; /* an empty key unless field 1 says otherwise */
    while (p < end) {
        uint64_t tag, val;
        if (read_varint(&p, end, &tag) < 0 || (tag >> 3) == 0)
            return -EINVAL;
        switch (tag & 7) {
        case 0:
            if (read_varint(&p, end, &val) < 0)
                return -EINVAL;
            if ((tag >> 3) == 2)
                r->create_revision = (int64_t)val;
            else if ((tag >> 3) == 4)
                r->version = (int64_t)val;
            else if ((tag >> 3) == 6)
                r->lease = (int64_t)val;
            break;
        case 1:
            if (end - p < 8)
                return -EINVAL;
            p += 8;
            break;
        case 2:
            if (read_varint(&p, end, &val) < 0 || val > (uint64_t)(end - p))
                return -EINVAL;
            if ((tag >> 3) == 1) {
                r->key = (const char *)p;
                r->key_len = (size_t)val;
            }
            p += val;
            break;
        case 5:
            if (end - p < 4)
                return -EINVAL;
            p += 4;
            break;
        default:
            return -EINVAL;
        }
    }
    return 0;
}

/* Orders parsed records by key, then by their place in the chunk (revision order). */
static int record_cmp(const void *a, const void *b)
{
    const struct record *x = *(const struct record *const *)a;
    const struct record *y = *(const struct record *const *)b;
    size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
    int c = n ? memcmp(x->key, y->key, n) : 0;
    if (c)
        return c;
    if (x->key_len != y->key_len)
        return x->key_len < y->key_len ? -1 : 1;
    return x < y ? -1 : (x > y);
}

int ki_restore_records(ki_index *t, size_t n, const char *keys, const size_t *key_lens,
                       const char *vals, const size_t *val_lens, size_t *done,
                       size_t *leased, size_t *nleased)
{
    const unsigned char *k = (const unsigned char *)keys, *v = (const unsigned char *)vals;
    struct record *recs;
    struct record **order;
    size_t i;
    int rc = 0;
    *nleased = 0;
    *done = 0;
    if (n == 0)
        return 0;
    recs = malloc(n * sizeof(*recs));
    order = malloc(n * sizeof(*order));
    if (!recs || !order) {
        free(recs);
        free(order);
        return -ENOMEM;
    }
    for (i = 0; i < n; i++) {
        rc = parse_record(k, key_lens[i], v, val_lens[i], &recs[i]);
        if (rc < 0) {
            *done = i;
            goto out;
        }
        order[i] = &recs[i];
        if (recs[i].lease && !recs[i].tombstone)
            leased[(*nleased)++] = i;
        k += key_lens[i];
        v += val_lens[i];
    }
    /* Key order keeps the B+tree's descents in cache; each key's records stay in order. */
    qsort(order, n, sizeof(*order), record_cmp);
    for (i = 0; i < n; i++) {
        const struct record *r = order[i];
        rc = ki_restore(t, r->key, r->key_len, r->main, r->sub, r->create_revision, r->version,
                        r->tombstone);
        if (rc < 0) {
            *done = (size_t)(r - recs);
            goto out;
        }
    }
    *done = n;
out:
    free(recs);
    free(order);
    return rc;
}

/* Positions at the first entry >= start (the whole tree when start_len is 0). */
static void seek(ki_index *t, const char *start, size_t start_len, struct leaf **lf, int *pos)
{
    struct key k = make_key(start, start_len);
    struct path p;
    descend(t, &k, &p);
    *lf = p.leaf;
    *pos = p.pos;
}

/* The index's result buffers, grown (by doubling) to hold need items. */
static int reserve_nums(ki_index *t, size_t need)
{
    size_t n = t->nums_cap ? t->nums_cap : 256;
    int64_t *m;
    if (t->nums && need <= t->nums_cap)
        return 0;
    while (n < need)
        n *= 2;
    m = realloc(t->nums, n * sizeof(*m));
    if (!m)
        return -ENOMEM;
    t->nums = m;
    t->nums_cap = n;
    return 0;
}

static int reserve_keys(ki_index *t, size_t need)
{
    size_t n = t->keys_cap ? t->keys_cap : 256;
    char *m;
    if (t->keys && need <= t->keys_cap)
        return 0;
    while (n < need)
        n *= 2;
    m = realloc(t->keys, n);
    if (!m)
        return -ENOMEM;
    t->keys = m;
    t->keys_cap = n;
    return 0;
}

static int range_walk(ki_index *t, const char *start, size_t start_len, const char *end,
                      size_t end_len, int64_t at_rev, int64_t limit, int emit,
                      int64_t *total, int64_t *n)
{
    struct key kend = make_key(end, end_len);
    struct leaf *lf;
    int pos;
    int64_t count = 0, emitted = 0;
    size_t key_bytes = 0;
    if (t->broken)
        return -EIO;
    seek(t, start, start_len, &lf, &pos);
    for (; lf; lf = lf->next, pos = 0) {
        for (; pos < (int)lf->n; pos++) {
            const struct entry *e = lf->ent[pos];
            int64_t st[4];
            if (end_len && cmp_full(&kend, e) <= 0)
                goto done;
            if (entry_get(e, at_rev, st) != 0)
                continue;
            count++;
            if (!emit || (limit > 0 && emitted >= limit))
                continue;
            if (reserve_nums(t, (emitted + 1) * KI_RANGE_FIELDS) < 0 ||
                reserve_keys(t, key_bytes + e->key_len) < 0)
                return -ENOMEM;
            {
                int64_t *row = t->nums + emitted * KI_RANGE_FIELDS;
                row[0] = (int64_t)key_bytes;
                row[1] = e->key_len;
                row[2] = st[0];
                row[3] = st[1];
                row[4] = st[2];
                row[5] = st[3];
            }
            memcpy(t->keys + key_bytes, e->data, e->key_len);
            key_bytes += e->key_len;
            emitted++;
        }
    }
done:
    *total = count;
    if (n)
        *n = emitted;
    return 0;
}

int ki_range(ki_index *t, const char *start, size_t start_len, const char *end,
             size_t end_len, int64_t at_rev, int64_t limit, int64_t *total, int64_t *n,
             const int64_t **nums, const char **keys)
{
    int rc;
    if (limit < 0)
        return -ERANGE;
    rc = range_walk(t, start, start_len, end, end_len, at_rev, limit, 1, total, n);
    if (rc < 0)
        return rc;
    *nums = t->nums;
    *keys = t->keys;
    return 0;
}

int ki_count(ki_index *t, const char *start, size_t start_len, const char *end,
             size_t end_len, int64_t at_rev, int64_t *total)
{
    return range_walk(t, start, start_len, end, end_len, at_rev, 0, 0, total, NULL);
}

/* ---- compaction ------------------------------------------------------------------ */

static void *node_min_entry(void *n, int levels)
{
    while (levels-- > 0)
        n = ((struct inner *)n)->child[0];
    return ((struct leaf *)n)->ent[0];
}

/* Links every inner node into one list (through next) so the rebuild can reuse them. */
static struct inner *collect_inner(void *n, int levels, struct inner *pool)
{
    struct inner *in = n;
    if (levels == 0)
        return pool;
    for (uint32_t i = 0; i < in->n; i++)
        pool = collect_inner(in->child[i], levels - 1, pool);
    in->next = pool;
    return in;
}

/* Builds the inner levels over the (packed) leaf chain, taking nodes from pool. The
 * old tree had at least as many inner nodes per level as the packed one needs, so the
 * pool never runs dry; should it, a fresh allocation is tried. */
static int rebuild_inner(ki_index *t, struct inner *pool)
{
    int64_t count = 0, levels = 0;
    void *level_first = t->first;
    struct leaf *lf;
    for (lf = t->first; lf; lf = lf->next)
        count++;
    while (count > 1) {
        int64_t nn = (count + NODE_CAP - 1) / NODE_CAP, base = count / nn, extra = count % nn;
        void *child = level_first;
        struct inner *prev = NULL, *head = NULL;
        for (int64_t i = 0; i < nn; i++) {
            struct inner *in = pool;
            int64_t take = base + (i < extra ? 1 : 0);
            if (in) {
                pool = pool->next;
            } else {
                in = malloc(sizeof(*in));
                if (!in)
                    goto fail;
                t->bytes += sizeof(*in);
            }
            in->n = (uint32_t)take;
            in->next = NULL;
            for (int64_t c = 0; c < take; c++) {
                in->child[c] = child;
                if (c > 0)
                    in->sep[c - 1] = node_min_entry(child, (int)levels);
                child = levels == 0 ? (void *)((struct leaf *)child)->next
                                    : (void *)((struct inner *)child)->next;
            }
            refresh(in->win, in->sep, in->n - 1, &in->cpl);
            if (prev)
                prev->next = in;
            else
                head = in;
            prev = in;
        }
        level_first = head;
        count = nn;
        levels++;
    }
    t->root = level_first;
    t->height = (int)levels;
    while (pool) {
        struct inner *next = pool->next;
        free(pool);
        t->bytes -= sizeof(*pool);
        pool = next;
    }
    return 0;
fail:
    t->broken = 1;
    return -EIO;
}

int ki_compact(ki_index *t, int64_t at_rev, int64_t *n, const int64_t **revs)
{
    struct leaf *lf, *rnext, *w, *last;
    int64_t drop_total = 0, out = 0;
    uint32_t j = 0, last_n = 0;
    struct inner *pool;
    if (t->broken)
        return -EIO;
    for (lf = t->first; lf; lf = lf->next)
        for (uint32_t i = 0; i < lf->n; i++)
            drop_total += entry_drop_count(lf->ent[i], at_rev);
    if (reserve_nums(t, (size_t)drop_total * KI_COMPACT_FIELDS + 1) < 0)
        return -ENOMEM;

    /* Compact each entry and pack the survivors to the left, reusing the leaves in
     * order; the write position never passes the read position. */
    pool = collect_inner(t->root, t->height, NULL);
    w = last = t->first;
    for (lf = t->first; lf; lf = rnext) {
        uint32_t rn = lf->n;
        rnext = lf->next;
        for (uint32_t i = 0; i < rn; i++) {
            struct entry *e = lf->ent[i];
            uint32_t drop = entry_drop_count(e, at_rev);
            const struct rev *r = revs_of(e);
            for (uint32_t d = 0; d < drop; d++) {
                int64_t *row = t->nums + out++ * KI_COMPACT_FIELDS;
                row[0] = r[d].main;
                row[1] = r[d].sub & SUB_MASK;
                row[2] = is_tomb(&r[d]);
            }
            t->nrevs -= drop;
            if (drop == e->nrev) {
                entry_free(t, e);
                t->nkeys--;
                continue;
            }
            if (drop)
                e = entry_trim(t, e, drop);
            w->ent[j] = e;
            last = w;
            last_n = ++j;
            if (j == NODE_CAP) {
                w->n = NODE_CAP;
                w = w->next;
                j = 0;
            }
        }
    }
    last->n = last_n;
    lf = last->next;
    last->next = NULL;
    for (w = t->first; w; w = w->next)
        refresh(w->win, w->ent, w->n, &w->cpl);
    while (lf) {
        rnext = lf->next;
        free(lf);
        t->bytes -= sizeof(*lf);
        lf = rnext;
    }
    *n = out;
    *revs = t->nums;
    return rebuild_inner(t, pool);
}

int ki_stats(ki_index *t, int64_t *keys, int64_t *revisions, int64_t *bytes)
{
    *keys = t->nkeys;
    *revisions = t->nrevs;
    *bytes = t->bytes;
    return 0;
}
