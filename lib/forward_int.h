/* Internal parts of the forward policy shared by forward.c (the policy, rules, parents,
 * credentials) and forward_config.c (the configuration file reader). */
#ifndef FERRY__FORWARD_INT_H
#define FERRY__FORWARD_INT_H

#include "ferry/forward.h"

/* Daemon settings a configuration file may carry (listen may repeat). */
ferry_err ferry__forward_add_listen(ferry_forward *fwd, const char *address);
ferry_err ferry__forward_set_workers(ferry_forward *fwd, unsigned workers);
ferry_err ferry__forward_set_access_log(ferry_forward *fwd, const char *path);

#endif
