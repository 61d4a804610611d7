# bash completion for corral: commands, options and the names corrald knows (instances,
# templates, networks, pools, snapshots, backups), answered by `corral __complete`, which
# reads the command tree and asks corrald without loading the whole CLI.
_corral() {
  local IFS=$'\n'
  local -a found
  found=($(command corral __complete bash "$COMP_CWORD" "${COMP_WORDS[@]}" 2>/dev/null))
  if [ "${#found[@]}" -gt 0 ]; then
    COMPREPLY=("${found[@]}")
  else
    COMPREPLY=()
    compopt -o default 2>/dev/null  # a file name (template import FILE), or nothing
  fi
}
complete -F _corral corral
