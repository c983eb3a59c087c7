" gitlockd for Vim: commit the current file now, show its history, bring
" back an older version, undo a commit.
"   :GitlockdCommit [message]   commit this file now (default message from the config)
"   :GitlockdLog                the file's last 20 commits
"   :GitlockdRestore {rev}      this file as it was at {rev} (e.g. HEAD~1), as a new commit
"   :GitlockdRestoreAt {dur}    this file as it was {dur} ago (e.g. 2h), as a new commit
"   :GitlockdUndo [commit]      revert a commit (default the last one) as a new commit
" The notebook is found from the file's folder; gitlockd must be on PATH.
" After a restore or undo the buffer is re-read (`:checktime` asks first
" when it has unsaved changes).
" Line continuations below need 'cpoptions' without C: set it to Vim's
" default while sourcing (vi-compatible mode, `vim -u NONE`), then restore it.
let s:save_cpo = &cpo
set cpo&vim

function! s:Gitlockd(args) abort
  let l:out = system('gitlockd ' . join(map(copy(a:args), 'shellescape(v:val)'), ' '))
  echo substitute(l:out, '\n\+$', '', '')
  return v:shell_error
endfunction

command! -nargs=? GitlockdCommit call s:Gitlockd(['commit', expand('%:p:h')]
      \ + (empty(<q-args>) ? [] : ['-m', <q-args>]) + [expand('%:p')])
command! GitlockdLog call s:Gitlockd(['log', expand('%:p:h'), expand('%:p'), '-n', '20'])
command! -nargs=1 GitlockdRestore call s:Gitlockd(['restore', expand('%:p:h'), expand('%:p'),
      \ '--rev', <q-args>]) | checktime
command! -nargs=1 GitlockdRestoreAt call s:Gitlockd(['restore', expand('%:p:h'), expand('%:p'),
      \ '--at', <q-args>]) | checktime
command! -nargs=? GitlockdUndo call s:Gitlockd(['undo', expand('%:p:h')]
      \ + (empty(<q-args>) ? [] : [<q-args>])) | checktime

let &cpo = s:save_cpo
unlet s:save_cpo
