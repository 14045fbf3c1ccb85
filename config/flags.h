// The command line: llm.c's short flags with their meanings, a long name for every option, a JSON
// config file, and --help, all generated from one table so the usage text cannot drift from the parser.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/config.h"

namespace coldstart {

enum class ParseOutcome { run, help_shown };

// Parses argv (argv[0] is the program). A --config FILE found anywhere is applied first, then the flags
// in order. Prints the help text and returns help_shown for --help. Throws Error naming the flag (or the
// config file and key) and what was expected.
ParseOutcome parse_command_line(int argc, const char* const* argv, Config& config);

// Applies a JSON object of {long-name: value} to config; `source` names it in errors.
void apply_json_config(const nlohmann::json& object, const std::string& source, Config& config);
void load_json_config_file(const std::string& path, Config& config);

nlohmann::json config_to_json(const Config& config);  // every option under its long name
std::string help_text();

}  // namespace coldstart
