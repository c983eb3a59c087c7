" gitlockd for Vim: commit the current file now, or show its history.
"   :GitlockdCommit [message]   commit this file now (default message from the config)
"   :GitlockdLog                the file's last 20 commits
" The notebook is found from the file's folder; gitlockd must be on PATH.
function! s:Gitlockd(args) abort
  let l:out = system('gitlockd ' . join(map(copy(a:args), 'shellescape(v:val)'), ' '))
  echo substitute(l:out, '\n\+$', '', '')
  return v:shell_error
endfunction

command! -nargs=? GitlockdCommit call s:Gitlockd(['commit', expand('%:p:h')]
      \ + (empty(<q-args>) ? [] : ['-m', <q-args>]) + [expand('%:p')])
command! GitlockdLog call s:Gitlockd(['log', expand('%:p:h'), expand('%:p'), '-n', '20'])
