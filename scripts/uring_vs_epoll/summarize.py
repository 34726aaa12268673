import re,sys,collections
rows=[];sc=[]
for l in open(sys.argv[1] if len(sys.argv)>1 else 'results.txt'):
    if l.startswith('RESULT'):
        d=dict(kv.split('=',1) for kv in l.split()[1:]); rows.append(d)
    elif l.startswith('SYSCALLS'):
        d=dict(kv.split('=',1) for kv in l.split()[1:] if '=' in kv); d['ev']=l.split()[3]; sc.append(d)
print("| # | N | server (client) | ops/s | server µs/op (stat) | server µs/op (schedstat) | sqpoll thr µs/op | client µs/op (stat) | client µs/op (schedstat) | server+client µs/op | other procs CPU% |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
agg=collections.defaultdict(list)
perf_rows=[r for r in rows]
for i,d in enumerate(rows):
    f=lambda k: float(d.get(k,'nan'))
    other=2*f('sys_busy_pct')-f('client_cpu_pct')-f('server_cpu_pct')
    tot=f('server_us_per_op')+f('client_us_per_op')
    tag='' 
    print(f"| {i+1} | {d['conns']} | {d['label']} | {f('ops_per_s'):,.0f} | {f('server_us_per_op'):.2f} | {f('sched_server_us_per_op'):.2f} | {d.get('sqpoll_thread_us_per_op','-')} | {f('client_us_per_op'):.2f} | {f('sched_client_us_per_op'):.2f} | {tot:.2f} | {other:.0f} |")
    agg[(d['conns'],d['label'],d['secs'][:1])].append((f('ops_per_s'),f('sched_server_us_per_op'),f('sched_client_us_per_op'),other))
print("\nmedians (schedstat, per N/label; secs group distinguishes perf runs):")
import statistics as st
for k,v in agg.items():
    print(k, "n=%d ops/s=%.0f srv=%.2f cli=%.2f other%%=%.0f"%(len(v),st.median(x[0] for x in v),st.median(x[1] for x in v),st.median(x[2] for x in v),st.median(x[3] for x in v)))
print()
for d in sc: print(d['conns'], d['label'], d['ev'], d['per_op'])
