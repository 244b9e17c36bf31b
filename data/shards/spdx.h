// License expressions in dataset manifests: the syntax of SPDX (identifiers such as MIT,
// Apache-2.0, GPL-2.0+, LicenseRef-x, DocumentRef-a:LicenseRef-b, joined by AND / OR / WITH,
// with parentheses). Only the syntax: the SPDX license list itself is not embedded.
#pragma once

#include <string_view>

namespace exatrain {

bool is_spdx_expression(std::string_view text);

}  // namespace exatrain
